//! `/mechanisms`: the stored mechanism analyses (`safeedit analyze`), newest first.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::launch::{AnalysisLauncher, CompareLauncher};
use crate::list_analyses;

/// `/mechanisms`
#[component]
pub fn MechanismsPage() -> impl IntoView {
    let analyses = Resource::new(|| (), |_| list_analyses());
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
                    Ok(list) if list.is_empty() => {
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
                    Ok(list) => {
                        let rows = list
                            .into_iter()
                            .map(|a| {
                                view! {
                                    <tr data-slug=a.slug.clone()>
                                        <td>
                                            <a href=format!(
                                                "/mechanisms/{}",
                                                a.slug,
                                            )>{a.slug.clone()}</a>
                                        </td>
                                        <td>{a.created_at.clone()}</td>
                                        <td>{a.model.clone()}</td>
                                        <td>{a.methods.join(", ")}</td>
                                        <td class="num">{a.layer.to_string()}</td>
                                        <td class="num">{a.inputs.to_string()}</td>
                                    </tr>
                                }
                            })
                            .collect_view();
                        view! {
                            <div class="scroll">
                            <table class="runs" id="analyses">
                                <thead>
                                    <tr>
                                        <th>"analysis"</th>
                                        <th>"stored"</th>
                                        <th>"model"</th>
                                        <th>"methods"</th>
                                        <th class="num">"layer"</th>
                                        <th class="num">"inputs"</th>
                                    </tr>
                                </thead>
                                <tbody>{rows}</tbody>
                            </table>
                            </div>
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
