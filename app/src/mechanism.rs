//! `/mechanisms/{slug}`: one analysis (docs/method.md §Mechanisms) — the comparison table
//! (toxicity of the toxic region and activation shift per method) with downloads, the four
//! figures, every analysed model, the probe and the logit lens. Read-only: the server renders the
//! page with its figures (`mechanism_body.rs`) and the browser runs only its share line.

use leptos::prelude::*;

use crate::analysis_html;
use crate::record_page::record_page;
use crate::server_html::rendered_page;

/// `/mechanisms/{slug}`
#[component]
pub fn MechanismPage() -> impl IntoView {
    record_page(
        "slug",
        "Loading the analysis…",
        analysis_html,
        rendered_page,
    )
}
