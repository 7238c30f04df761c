//! `/instances/{split}/{id}`: one SafeEdit record — question, adversarial prompt, safe and unsafe
//! generations, the generalisation inputs, the knowledge-constraint pair — and the panel that
//! detoxifies or evaluates it, with the runs made on it. The server renders the record and its
//! runs (`instance_body.rs`); the detoxify panel runs in the browser.

use leptos::prelude::*;

use crate::codec::resource;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::detoxify::DetoxifyPanel;
use crate::server_html::server_html;
use crate::{NotFound, instance_html};

/// `/instances/{split}/{id}`
#[component]
pub fn InstanceView() -> impl IntoView {
    let params = use_params_map();
    let key = Memo::new(move |_| {
        let p = params.get();
        (
            p.get("split").unwrap_or_default(),
            p.get("id").and_then(|id| id.parse::<u64>().ok()),
        )
    });
    let page = resource(
        move || key.get(),
        |(split, id)| async move {
            match id {
                Some(id) => instance_html(split, id).await,
                None => Ok(None),
            }
        },
    );
    view! {
        <Suspense fallback=|| view! { <p>"Loading the instance…"</p> }>
            {move || Suspend::new(async move {
                let (split, id) = key.get_untracked();
                match (page.await, id) {
                    (Ok(Some(page)), Some(id)) => {
                        view! {
                            <Title text=page.title />
                            {server_html(page.head)}
                            <DetoxifyPanel split id />
                            {page.body.into_iter().map(server_html).collect_view()}
                        }
                            .into_any()
                    }
                    (Ok(_), _) => view! { <NotFound /> }.into_any(),
                    (Err(e), _) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
    .into_any()
}
