//! The page of one mechanism analysis (`/mechanisms/{slug}`) with its figures, and the
//! `/mechanisms` page's list of analyses, rendered to HTML on the server (see `server_html.rs`).

use leptos::prelude::*;
use safeedit_core::mechanism::{
    AnalysisRecord, AnalysisSummary, LensRow, MethodMechanism, TABLE_COLUMNS,
};
use safeedit_core::run::FigureSvg;

use crate::figure::FigureCard;
use crate::format::score;
use crate::server_html::RenderedPage;

/// Below this magnitude, vanilla's mean cosine over all columns makes a relative reduction
/// unreliable (the page says so).
const SMALL_BASELINE: f64 = 0.005;

/// The page's charts, in order, with their captions.
pub(crate) const CHARTS: [(&str, &str); 4] = [
    (
        "toxicity",
        "Toxicity reduction of the toxic region per method (all columns and the top-k most toxic).",
    ),
    (
        "shift",
        "Shift of the mean activation entering the toxic layer's down_proj, per method and pooling.",
    ),
    (
        "projection",
        "Mid-layer residuals of the same inputs in each model, projected on the shift direction and \
         the first principal component; lines join an input across models (paper Fig. 8).",
    ),
    (
        "cosines",
        "Distribution of the toxic layer's column cosines with the toxicity probe, vanilla against \
         each method.",
    ),
];

/// The analysis's page; `figures` are its [`CHARTS`] as drawn (`None`: nothing to draw).
pub(crate) fn render(record: AnalysisRecord, figures: Vec<Option<FigureSvg>>) -> RenderedPage {
    let slug = record.slug.clone();
    RenderedPage {
        title: format!("Mechanism analysis {slug}"),
        head: view! { <h1>"Mechanism analysis " <code>{slug.clone()}</code></h1> }.to_html(),
        unlist: Some(slug),
        body: vec![view! { <AnalysisBody record figures /> }.to_html()],
    }
}

fn comparison_row(m: &MethodMechanism) -> impl IntoView + use<> {
    let cells = TABLE_COLUMNS
        .iter()
        .map(|(_, value)| view! { <td class="num">{score(value(m))}</td> })
        .collect_view();
    view! {
        <tr data-method=m.method.clone()>
            <th>{m.method.clone()}</th>
            {cells}
            <td class="num">{m.models.len().to_string()}</td>
        </tr>
    }
}

fn lens_row(row: &LensRow) -> impl IntoView + use<> {
    let models = row
        .tokens
        .iter()
        .map(|(model, tokens)| {
            let shown = tokens
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(" ");
            view! {
                <li>
                    <span class="muted">{format!("{model}: ")}</span>
                    <code>{shown}</code>
                </li>
            }
        })
        .collect_view();
    view! {
        <tr>
            <td class="num">{row.column.to_string()}</td>
            <td class="num">{format!("{:.3}", row.cosine)}</td>
            <td>
                <ul class="lens">{models}</ul>
            </td>
        </tr>
    }
}

#[component]
fn AnalysisBody(record: AnalysisRecord, figures: Vec<Option<FigureSvg>>) -> impl IntoView {
    let AnalysisRecord {
        slug,
        created_at,
        model,
        methods: _,
        run,
        report,
    } = record;
    let api = format!("/api/mechanisms/{slug}");
    let probe = &report.probe;
    let [tp, fp, tn, fn_] = probe.held_out_confusion;
    let probe_line = format!(
        "{:.1}% held-out accuracy on {} texts (toxic caught {tp} of {}, non-toxic {tn} of {}); \
         trained on {} non-toxic and {} toxic texts, mean-pooled over at most {} tokens.",
        probe.held_out_accuracy * 100.0,
        probe.held_out_counts.iter().sum::<usize>(),
        tp + fn_,
        tn + fp,
        probe.train_counts[0],
        probe.train_counts[1],
        probe.max_tokens,
    );
    let headings = TABLE_COLUMNS
        .iter()
        .map(|(h, _)| view! { <th class="num">{*h}</th> })
        .collect_view();
    let comparison = report.methods.iter().map(comparison_row).collect_view();
    // A reduction is relative to vanilla's mean cosine; near 0 it magnifies noise.
    let small_baseline = report
        .methods
        .iter()
        .flat_map(|m| m.models.iter())
        .map(|x| x.region.vanilla_all)
        .find(|v| v.abs() < SMALL_BASELINE)
        .map(|v| {
            view! {
                <p class="caveat" id="small-baseline">
                    {format!(
                        "Vanilla's mean cosine over all columns is {v:.5}, close to 0: a change of \
                         a few ten-thousandths is a large percentage of it, so the all-columns \
                         reduction (and its bar) can be large or flip sign with no real change. \
                         Read the absolute values under Every analysed model, and the top-k \
                         column, whose baseline is larger."
                    )}
                </p>
            }
        });
    let models = report
        .methods
        .iter()
        .flat_map(|m| {
            m.models.iter().map(move |x| {
                view! {
                    <tr>
                        <td>{m.method.clone()}</td>
                        <td>{x.label.clone()}</td>
                        <td class="num">
                            {x.edited_layer.map_or("all".into(), |l| l.to_string())}
                        </td>
                        <td class="num">{x.region.layer.to_string()}</td>
                        <td class="num">
                            {format!("{:.4} → {:.4}", x.region.vanilla_all, x.region.method_all)}
                        </td>
                        <td class="num">
                            {format!("{:.4} → {:.4}", x.region.vanilla_top, x.region.method_top)}
                        </td>
                        <td class="num">{score(x.shift_token_mean)}</td>
                        <td class="num">{score(x.shift_last_token)}</td>
                    </tr>
                }
            })
        })
        .collect::<Vec<_>>();
    let lens = report.lens.iter().map(lens_row).collect_view();
    let inputs_fold = run["inputs_fold"].as_str().unwrap_or("all").to_string();
    let settings = serde_json::to_string_pretty(&run).unwrap_or_default();
    let top_k = report.top_k;
    let figures = CHARTS
        .iter()
        .zip(figures)
        .filter_map(|((chart, caption), figure)| {
            let base = format!("{api}/figures/{chart}");
            figure.map(|figure| view! { <FigureCard figure base caption=caption.to_string() /> })
        })
        .collect_view();
    view! {
        <p class="muted">
            {format!(
                "{model}{} · toxic layer {} ({}) · top-{top_k} columns · {} adversarial inputs (fold {inputs_fold}) · stored {created_at}",
                report.weights.as_ref().map(|w| format!(" ({w} weights)")).unwrap_or_default(),
                report.layer,
                report.layer_source,
                report.inputs,
            )}
        </p>
        <section class="card">
            <h2>"Comparison"</h2>
            <p class="muted">
                "Toxicity reduction: how much less the region's value vectors (the "
                <code>"down_proj"</code>
                " columns) point along the toxicity probe than vanilla's, over all columns and over vanilla's top-k (paper Fig. 7). Activation shift: how far the mean activation entering the region moved, in % of vanilla's norm (docs/method.md §Mechanisms). N: models averaged (one per edit)."
            </p>
            <div class="scroll">
            <table class="metrics" id="mechanism-table">
                <thead>
                    <tr>
                        <th>"method"</th>
                        {headings}
                        <th class="num">"N"</th>
                    </tr>
                </thead>
                <tbody>{comparison}</tbody>
            </table>
            </div>
            {small_baseline}
            <p class="downloads">
                <a class="button" href=format!("{api}/analysis.csv") download="">
                    "CSV"
                </a>
                " "
                <a class="button" href=format!("{api}/analysis.tex") download="">
                    "LaTeX"
                </a>
                " "
                <a class="button" href=format!("{api}/analysis.json") download="">
                    "JSON"
                </a>
            </p>
        </section>
        <section class="card figures">
            <h2>"Figures"</h2>
            {figures}
        </section>
        <section class="card">
            <h2>"Every analysed model"</h2>
            <div class="scroll">
            <table class="metrics" id="mechanism-models">
                <thead>
                    <tr>
                        <th>"method"</th>
                        <th>"model"</th>
                        <th class="num">"edited layer"</th>
                        <th class="num">"region layer"</th>
                        <th class="num">"toxicity, all"</th>
                        <th class="num">{format!("toxicity, top-{top_k}")}</th>
                        <th class="num">"shift, token mean (%)"</th>
                        <th class="num">"shift, last token (%)"</th>
                    </tr>
                </thead>
                <tbody>{models}</tbody>
            </table>
            </div>
        </section>
        <section class="card">
            <h2>"Toxicity probe"</h2>
            <p id="probe">{probe_line}</p>
            <p class="muted">{probe.data.clone()}</p>
        </section>
        <section class="card">
            <h2>"Logit lens of the most toxic value vectors"</h2>
            <p class="muted">
                "The columns of the toxic layer's down_proj most aligned with the probe, read through the unembedding: their top tokens in vanilla and in each method's first model."
            </p>
            <div class="scroll">
            <table class="metrics" id="lens">
                <thead>
                    <tr>
                        <th class="num">"column"</th>
                        <th class="num">"cosine"</th>
                        <th>"top tokens"</th>
                    </tr>
                </thead>
                <tbody>{lens}</tbody>
            </table>
            </div>
        </section>
        <details class="card">
            <summary>"Settings"</summary>
            <pre>{settings}</pre>
        </details>
    }
    .into_any()
}

/// The `/mechanisms` page's table of every stored analysis, newest first.
pub(crate) fn render_list(list: Vec<AnalysisSummary>) -> String {
    view! { <AnalysisList list /> }.to_html()
}

#[component]
fn AnalysisList(list: Vec<AnalysisSummary>) -> impl IntoView {
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
    }
}
