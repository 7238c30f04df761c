//! A chart as the server drew it (inline SVG, so the preview is the export), with its downloads:
//! SVG, vector PDF and 300 dpi PNG, each at the ACL column and full-width presets.

use leptos::prelude::*;
use safeedit_core::run::FigureSvg;

/// Width presets, as the download URLs name them.
const PRESETS: [(&str, &str); 2] = [
    ("column", "column (7.7 cm)"),
    ("full", "full width (16 cm)"),
];
/// Formats, as the download URLs name them.
const FORMATS: [(&str, &str); 3] = [("svg", "SVG"), ("pdf", "PDF"), ("png", "PNG 300 dpi")];

/// One figure with its download links; `base` is the URL the format is appended to
/// (`{base}.{svg|pdf|png}?preset=...`, then `&{query}` when given).
#[component]
pub fn FigureCard(
    figure: FigureSvg,
    base: String,
    caption: String,
    #[prop(optional)] query: String,
) -> impl IntoView {
    let downloads = PRESETS
        .iter()
        .map(|(preset, preset_label)| {
            let links = FORMATS
                .iter()
                .map(|(format, format_label)| {
                    let href = if query.is_empty() {
                        format!("{base}.{format}?preset={preset}")
                    } else {
                        format!("{base}.{format}?preset={preset}&{query}")
                    };
                    view! {
                        <a
                            class="download"
                            href=href
                            download=""
                            data-format=*format
                            data-preset=*preset
                        >
                            {*format_label}
                        </a>
                        " "
                    }
                })
                .collect_view();
            view! {
                <li>
                    <span class="muted">{*preset_label} ": "</span>
                    {links}
                </li>
            }
        })
        .collect_view();
    view! {
        <figure class="chart" id=format!("fig-{}", figure.name)>
            <div class="svg" inner_html=figure.svg></div>
            <figcaption>{caption}</figcaption>
            <ul class="downloads">{downloads}</ul>
        </figure>
    }
    .into_any()
}
