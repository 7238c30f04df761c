//! "Copy link": the page's address, ready to paste to a collaborator. Every result page's URL is
//! the result (slugs and filters are in it), so the link opens the same view anywhere.

use leptos::prelude::*;

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
}
