//! "Copy link": the page's address, ready to paste to a collaborator. Every result page's URL is
//! the result (slugs and filters are in it), so the link opens the same view anywhere.

use leptos::prelude::*;

use crate::codec::resource;

/// A button that copies this page's address; where the browser gives no clipboard (a page served
/// over plain HTTP from another machine), the address is shown selected, to copy by hand.
#[component]
pub fn CopyLink() -> impl IntoView {
    // What happened: "" (not yet), "copied", or the address to copy by hand.
    let state = RwSignal::new(String::new());
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            let window = leptos::prelude::window();
            let Ok(href) = window.location().href() else {
                return;
            };
            let clipboard = window.navigator().clipboard();
            if clipboard
                .unchecked_ref::<wasm_bindgen::JsValue>()
                .is_undefined()
            {
                state.set(href);
            } else {
                let _ = clipboard.write_text(&href);
                state.set("copied".into());
            }
        }
    };
    view! {
        <span class="copy-link">
            <button class="secondary" id="copy-link" on:click=copy>
                {move || if state.get() == "copied" { "Link copied" } else { "Copy link" }}
            </button>
            {move || {
                let s = state.get();
                (!s.is_empty() && s != "copied")
                    .then(|| view! { <input id="copy-link-text" readonly value=s size="40" /> })
            }}
        </span>
    }
    .into_any()
}

/// "Unlist": leaves this record off every listing (/runs, Results, Mechanisms, test_ALL,
/// instance pages) so that only people given its link open it; "List again" undoes it.
#[component]
pub fn Unlist(slug: String) -> impl IntoView {
    let unlisted = resource(
        {
            let slug = slug.clone();
            move || slug.clone()
        },
        crate::is_unlisted,
    );
    let toggle = Action::new(move |(slug, unlisted): &(String, bool)| {
        crate::set_unlisted(slug.clone(), *unlisted)
    });
    // Effects run in the browser only: the button works once the page has hydrated.
    let ready = RwSignal::new(false);
    Effect::new(move |_| ready.set(true));
    // The answer of the last toggle wins over the page's first reading.
    let current = move || match toggle.value().get() {
        Some(Ok(state)) => Some(state),
        _ => unlisted.get().and_then(Result::ok),
    };
    let error = move || match toggle.value().get() {
        Some(Err(e)) => Some(e.to_string()),
        _ => None,
    };
    view! {
        <Suspense fallback=|| ()>
            {move || {
                let slug = slug.clone();
                current()
                    .map(|state| {
                        let label = if state { "List again" } else { "Unlist" };
                        let note = if state {
                            "Unlisted: only people with the link can find it."
                        } else {
                            ""
                        };
                        view! {
                            <span class="unlist">
                                <button
                                    class="secondary"
                                    id="unlist"
                                    disabled=move || !ready.get() || toggle.pending().get()
                                    on:click=move |_| {
                                        toggle.dispatch((slug.clone(), !state));
                                    }
                                >
                                    {label}
                                </button>
                                <span class="note" id="unlist-note">{note}</span>
                            </span>
                        }
                    })
            }}
            {move || error().map(|e| view! { <span class="error">{e}</span> })}
        </Suspense>
    }
    .into_any()
}
