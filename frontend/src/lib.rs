//! The WebAssembly entry point: hydrates the server-rendered page.
// Deep view types of the app's pages are laid out here, in the hydrate build.
#![recursion_limit = "256"]

/// Called by Leptos' hydration script once the bundle has loaded.
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
