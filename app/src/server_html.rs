//! Read-only page sections rendered to HTML on the server. A section with nothing to click but
//! links needs no code in the browser: a server function renders its view to HTML (the view's
//! code is compiled into the server only, in the `*_body.rs` files) and the page shows that HTML
//! as sent, on the first load and after client-side navigation alike. Links inside it still
//! navigate client-side (the router handles clicks on any link in the document). Every such
//! section is a view like any other, so its text is escaped the same way.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::share::{CopyLink, Unlist};

/// Shows HTML a server function rendered from a read-only view.
pub(crate) fn server_html(html: String) -> impl IntoView + use<> {
    view! { <div class="server-html" inner_html=html></div> }
}

/// A stored record's page as the server rendered it, around the share line (the one part that
/// runs in the browser).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedPage {
    /// The document's title.
    pub title: String,
    /// The HTML above the share line (crumbs, heading).
    pub head: String,
    /// The HTML below it, in sections between which a page can place parts that run in the
    /// browser (a generic page shows them one after the other).
    pub body: Vec<String>,
    /// The record's slug, for its Unlist button (`None`: no button).
    pub unlist: Option<String>,
}

impl RenderedPage {
    /// The title, the head, the `N` body sections a page places its browser parts between, and
    /// the record's slug (empty without one). Sections missing from the server's answer are
    /// empty.
    pub(crate) fn into_parts<const N: usize>(self) -> (String, String, [String; N], String) {
        let mut body = self.body.into_iter();
        let sections = std::array::from_fn(|_| body.next().unwrap_or_default());
        (
            self.title,
            self.head,
            sections,
            self.unlist.unwrap_or_default(),
        )
    }
}

/// The share line: Copy link, and Unlist for the record `unlist` names.
pub(crate) fn share_line(unlist: Option<String>) -> impl IntoView + use<> {
    view! {
        <p class="share">
            <CopyLink />
            {unlist.map(|slug| view! { " " <Unlist slug /> })}
        </p>
    }
}

/// Shows a rendered record page with its share line (Copy link, Unlist).
pub(crate) fn rendered_page(page: RenderedPage) -> impl IntoView + use<> {
    let RenderedPage {
        title,
        head,
        body,
        unlist,
    } = page;
    view! {
        <leptos_meta::Title text=title />
        {server_html(head)}
        {share_line(unlist)}
        {body.into_iter().map(server_html).collect_view()}
    }
    .into_any()
}
