//! The `/runs` page's catalogue, filtered, rendered to HTML on the server (see `runs.rs`).

use leptos::prelude::*;
use safeedit_core::run::CatalogEntry;

/// Which stored results the page lists: the filters in its URL (`None`: not filtered by it; the
/// split, instance and layer filters are the edit runs').
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RunsFilter {
    pub kind: Option<String>,
    pub split: Option<String>,
    pub instance: Option<String>,
    pub layer: Option<String>,
}

impl RunsFilter {
    /// Whether `e` passes every filter given.
    pub(crate) fn keeps(&self, e: &CatalogEntry) -> bool {
        let Self {
            kind,
            split,
            instance,
            layer,
        } = self;
        let edit_filter = split.is_some() || instance.is_some() || layer.is_some();
        kind.as_ref().is_none_or(|k| e.kind == *k)
            && (!edit_filter
                || e.edit.as_ref().is_some_and(|r| {
                    split.as_ref().is_none_or(|s| r.split == *s)
                        && instance
                            .as_ref()
                            .is_none_or(|i| r.instance.to_string() == *i)
                        && layer.as_ref().is_none_or(|l| r.layer.to_string() == *l)
                }))
    }
}

/// The catalogue `all` (newest first) as the page shows it under `filter`.
pub(crate) fn render(all: Vec<CatalogEntry>, filter: &RunsFilter) -> String {
    if all.is_empty() {
        return view! { <Empty /> }.to_html();
    }
    let total = all.len();
    let shown: Vec<CatalogEntry> = all.into_iter().filter(|e| filter.keeps(e)).collect();
    view! { <Listed shown total /> }.to_html()
}

#[component]
fn Empty() -> impl IntoView {
    view! {
        <p class="muted">
            "Nothing stored yet: open an instance and press “Detoxify this \
             instance”, or run an evaluation on "
            <a href="/results">"Results"</a>
            "."
        </p>
    }
}

#[component]
fn Listed(shown: Vec<CatalogEntry>, total: usize) -> impl IntoView {
    let count = format!("{} of {total} runs", shown.len());
    let rows = shown
        .into_iter()
        .map(|e| {
            let tick = e.edit.as_ref().map(|r| {
                view! {
                    <input
                        type="checkbox"
                        name="run"
                        value=r.slug.clone()
                        aria-label=format!("compare {}", r.slug)
                    />
                }
            });
            view! {
                <tr data-kind=e.kind.clone()>
                    <td>{tick}</td>
                    <td>{e.kind.replace('_', " ")}</td>
                    <td>
                        <a href=e.href.clone()>{e.slug.clone()}</a>
                    </td>
                    <td>{e.title.clone()}</td>
                    <td>{e.headline.clone()}</td>
                    <td>{e.model.clone()}</td>
                    <td>{e.created_at.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <form method="get" action="/compare" id="compare-form">
            <p class="muted" id="runs-count">{count}</p>
            <table class="instances" id="runs-table">
                <thead>
                    <tr>
                        <th></th>
                        <th>"kind"</th>
                        <th>"result"</th>
                        <th>"what"</th>
                        <th>"headline"</th>
                        <th>"model"</th>
                        <th>"stored"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
            <p>
                <button type="submit" id="compare-button">
                    "Compare the ticked edit runs (2–4)"
                </button>
            </p>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use safeedit_core::run::{CatalogEntry, RunSummary};

    use super::*;

    fn entry(kind: &str, slug: &str, edit: Option<(&str, u64, usize)>) -> CatalogEntry {
        CatalogEntry {
            kind: kind.into(),
            slug: slug.into(),
            href: format!("/{kind}/{slug}"),
            created_at: "2026-11-29T00:00:00Z".into(),
            title: format!("title of {slug}"),
            model: "m".into(),
            headline: "DS 0.50".into(),
            edit: edit.map(|(split, instance, layer)| RunSummary {
                slug: slug.into(),
                kind: "dinm-edit".into(),
                created_at: String::new(),
                split: split.into(),
                instance,
                model: "m".into(),
                layer,
                ds: (0.0, 1.0),
            }),
        }
    }

    fn filter(kind: Option<&str>, split: Option<&str>, instance: Option<&str>) -> RunsFilter {
        RunsFilter {
            kind: kind.map(Into::into),
            split: split.map(Into::into),
            instance: instance.map(Into::into),
            layer: None,
        }
    }

    #[test]
    fn the_filters_keep_what_they_name_and_edit_filters_only_edit_runs() {
        let all = [
            entry("edit", "e1", Some(("test", 3, 11))),
            entry("edit", "e2", Some(("train", 3, 20))),
            entry("eval", "v1", None),
        ];
        let kept = |f: &RunsFilter| -> Vec<String> {
            all.iter()
                .filter(|e| f.keeps(e))
                .map(|e| e.slug.clone())
                .collect()
        };
        assert_eq!(kept(&RunsFilter::default()), ["e1", "e2", "v1"]);
        assert_eq!(kept(&filter(Some("eval"), None, None)), ["v1"]);
        assert_eq!(kept(&filter(None, Some("test"), None)), ["e1"]);
        assert_eq!(kept(&filter(None, None, Some("3"))), ["e1", "e2"]);
        let layer = RunsFilter {
            layer: Some("20".into()),
            ..RunsFilter::default()
        };
        assert_eq!(kept(&layer), ["e2"]);
        assert!(kept(&filter(Some("eval"), Some("test"), None)).is_empty());
    }

    #[test]
    fn the_page_counts_what_it_shows_and_says_when_nothing_is_stored() {
        let all = vec![
            entry("edit", "e1", Some(("test", 3, 11))),
            entry("eval", "v1", None),
        ];
        let html = render(all, &filter(Some("edit"), None, None));
        assert!(html.contains("1 of 2 runs"), "{html}");
        assert!(html.contains(r#"value="e1""#), "{html}");
        assert!(!html.contains("/eval/v1"), "{html}");
        assert!(render(Vec::new(), &RunsFilter::default()).contains("Nothing stored yet"));
    }
}
