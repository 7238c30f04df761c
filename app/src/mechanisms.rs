//! `/mechanisms`: the stored mechanism analyses (`safeedit analyze`), newest first, in a table the
//! server renders (`mechanism_body.rs`), and the launchers of new ones.

use leptos::prelude::*;

use crate::codec::resource;
use leptos_meta::Title;

use crate::analyses_html;
use crate::launch::{AnalysisLauncher, CompareLauncher};
use crate::server_html::server_html;

/// `/mechanisms`
#[component]
pub fn MechanismsPage() -> impl IntoView {
    let analyses = resource(|| (), |_| analyses_html());
    view! {
        <Title text="Mechanisms" />
        <h1>"Mechanisms"</h1>
        <p class="muted">
            "How each method detoxifies: does it lower the toxicity of the toxic region's value \
             vectors, or shift the activations that flow into it? Analyses are made with "
            <code>"safeedit analyze --methods vanilla,sft=DIR,dpo=DIR,dinm"</code>
            " or the form below, and stored here with a shareable link."
        </p>
        <Suspense fallback=|| view! { <p>"Loading analyses…"</p> }>
            {move || Suspend::new(async move {
                match analyses.await {
                    Ok(None) => {
                        view! {
                            <p class="muted" id="no-analyses">
                                "No analyses yet: run the paper's comparison or an analysis of \
                                 your own below (or "
                                <code>"safeedit analyze --out DIR"</code>
                                ")."
                            </p>
                            <CompareLauncher open=true />
                            <AnalysisLauncher open=false />
                        }
                            .into_any()
                    }
                    Ok(Some(html)) => {
                        view! {
                            {server_html(html)}
                            <CompareLauncher open=false />
                            <AnalysisLauncher open=false />
                        }
                            .into_any()
                    }
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
    .into_any()
}
