//! The SafeEdit metric table across evaluation runs (the paper's Table 1 shape: one row per
//! method, DS, the four DG, DG-Avg, Fluency, KQA, CSum), and its exports: tidy CSV (one number
//! per line) and LaTeX (booktabs, the best value of each column in bold, a comment naming the
//! runs the numbers came from).

use serde::{Deserialize, Serialize};

use crate::QueryError;
use crate::eval::{MetricRow, SAFEEDIT_METRICS, concat, csv_field};
use crate::run::EvalRecord;

/// The table's columns in the paper's order; a column appears when some run has it.
pub const TABLE_METRICS: [&str; 10] = concat(SAFEEDIT_METRICS, ["KQA", "KQA-proxy", "CSum"]);

/// One evaluation run as the table sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalEntry {
    /// Row label (the method, e.g. `dinm`).
    pub method: String,
    /// The run's link (`/evals/{slug}`), absolute when a base URL is known.
    pub link: String,
    /// Its metric rows (overall, per category, per attack).
    pub metrics: Vec<MetricRow>,
}

/// A rendered table: columns, and per row a label, a link and one value per column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricTable {
    /// Which slice: `all`, `category` or `attack`.
    pub group: String,
    /// Which value of the group (`all`, a category string or an attack name).
    pub value: String,
    /// Metric names.
    pub columns: Vec<String>,
    /// Rows in the order of the entries.
    pub rows: Vec<TableRow>,
}

/// One row of a [`MetricTable`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRow {
    /// Method.
    pub method: String,
    /// Run link.
    pub link: String,
    /// One value per column (`None`: the run lacks it).
    pub values: Vec<Option<f64>>,
    /// Instances behind the DS value.
    pub n: Option<usize>,
}

impl MetricTable {
    /// The table of `entries` for one slice (`("all", "all")` for the paper's overall table).
    pub fn build(entries: &[EvalEntry], group: &str, value: &str) -> Self {
        let find = |e: &EvalEntry, metric: &str| {
            e.metrics
                .iter()
                .find(|r| r.group == group && r.value == value && r.metric == metric)
                .map(|r| (r.score, r.n))
        };
        // General-performance scores exist only overall; per-slice tables show them too when
        // asked for `all`.
        let columns: Vec<String> = TABLE_METRICS
            .iter()
            .filter(|m| entries.iter().any(|e| find(e, m).is_some()))
            .map(|m| m.to_string())
            .collect();
        let rows = entries
            .iter()
            .map(|e| TableRow {
                method: e.method.clone(),
                link: e.link.clone(),
                values: columns.iter().map(|c| find(e, c).map(|(s, _)| s)).collect(),
                n: find(e, "DS").map(|(_, n)| n),
            })
            .collect();
        Self {
            group: group.into(),
            value: value.into(),
            columns,
            rows,
        }
    }

    /// For each column, the largest value (every SafeEdit metric is higher-is-better), when at
    /// least two rows have one (a single value is not "best" of anything).
    pub fn best(&self) -> Vec<Option<f64>> {
        (0..self.columns.len())
            .map(|c| {
                let values: Vec<f64> = self.rows.iter().filter_map(|r| r.values[c]).collect();
                (values.len() >= 2).then(|| values.iter().copied().fold(f64::MIN, f64::max))
            })
            .collect()
    }

    /// LaTeX with booktabs: methods as rows, best per column in bold (values compared as
    /// printed, so ties in the shown digits are all bold), the run links in a comment.
    pub fn to_latex(&self, caption: &str) -> String {
        let best = self.best();
        let mut out = String::new();
        out.push_str("% SafeEdit metric table made by SafeEdit Studio\n");
        out.push_str(&format!("% slice: {} = {}\n", self.group, self.value));
        for r in &self.rows {
            out.push_str(&format!("% {}: {}\n", r.method, r.link));
        }
        out.push_str("% requires \\usepackage{booktabs}\n");
        out.push_str("\\begin{table}[t]\n\\centering\n\\small\n");
        out.push_str(&format!(
            "\\begin{{tabular}}{{l{}}}\n\\toprule\n",
            "r".repeat(self.columns.len())
        ));
        out.push_str("Method");
        for c in &self.columns {
            out.push_str(&format!(" & {}", latex_escape(c)));
        }
        out.push_str(" \\\\\n\\midrule\n");
        for r in &self.rows {
            out.push_str(&latex_escape(&r.method));
            for (c, v) in r.values.iter().enumerate() {
                let cell = match v {
                    None => "--".to_string(),
                    Some(v) => {
                        let shown = format!("{v:.2}");
                        let is_best = best[c].is_some_and(|b| format!("{b:.2}") == shown);
                        if is_best {
                            format!("\\textbf{{{shown}}}")
                        } else {
                            shown
                        }
                    }
                };
                out.push_str(&format!(" & {cell}"));
            }
            out.push_str(" \\\\\n");
        }
        out.push_str("\\bottomrule\n\\end{tabular}\n");
        out.push_str(&format!("\\caption{{{}}}\n", latex_escape(caption)));
        out.push_str("\\end{table}\n");
        out
    }
}

/// What the results page shows: the runs to pick from, the picked ones, the table of the chosen
/// slice, and the slices the picked runs have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultsView {
    /// Every stored evaluation, newest first (metric rows dropped).
    pub evals: Vec<EvalRecord>,
    /// Slugs of the runs in the table, in row order.
    pub selected: Vec<String>,
    /// The table.
    pub table: MetricTable,
    /// `(group, value)` slices available: all, categories, attacks.
    pub slices: Vec<(String, String)>,
}

impl ResultsView {
    /// Picks runs (`runs`: comma-separated slugs; `None`: the newest `safeedit eval` run of each
    /// method) from
    /// `all` (newest first) and builds the table of one slice. Rows are ordered vanilla first,
    /// then by method name; unknown slugs are an error naming them.
    pub fn build(
        all: Vec<EvalRecord>,
        runs: Option<&str>,
        group: &str,
        value: &str,
    ) -> Result<Self, QueryError> {
        let mut picked: Vec<&EvalRecord> = match runs {
            Some(list) => {
                let mut picked = Vec::new();
                for slug in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let found = all
                        .iter()
                        .find(|e| e.slug == slug)
                        .ok_or_else(|| QueryError(format!("no evaluation or edit run `{slug}`")))?;
                    if !picked.iter().any(|p: &&EvalRecord| p.slug == slug) {
                        picked.push(found);
                    }
                }
                picked
            }
            None => {
                // One-instance evaluations started from an instance page are not benchmark
                // runs; they join the table only when picked.
                let mut newest: Vec<&EvalRecord> = Vec::new();
                for e in all.iter().filter(|e| !e.from_web_app()) {
                    if !newest.iter().any(|n| n.method == e.method) {
                        newest.push(e);
                    }
                }
                newest
            }
        };
        if !["all", "category", "attack"].contains(&group) {
            return Err(QueryError(format!(
                "unknown group `{group}` (all, category, attack)"
            )));
        }
        picked.sort_by_key(|e| (e.method != "vanilla", e.method.clone()));
        let entries: Vec<EvalEntry> = picked
            .iter()
            .map(|e| EvalEntry {
                method: e.method.clone(),
                link: e.page(),
                metrics: e.metrics.clone(),
            })
            .collect();
        let mut slices: Vec<(String, String)> = vec![("all".into(), "all".into())];
        for g in ["category", "attack"] {
            let mut values: Vec<String> = picked
                .iter()
                .flat_map(|e| e.metrics.iter())
                .filter(|r| r.group == g)
                .map(|r| r.value.clone())
                .collect();
            values.sort();
            values.dedup();
            slices.extend(values.into_iter().map(|v| (g.to_string(), v)));
        }
        let table = MetricTable::build(&entries, group, value);
        let selected = picked.iter().map(|e| e.slug.clone()).collect();
        let evals = all
            .into_iter()
            .map(|mut e| {
                e.metrics.clear();
                e
            })
            .collect();
        Ok(Self {
            evals,
            selected,
            table,
            slices,
        })
    }
}

/// Every number of every entry in tidy (long) form:
/// `method,run,group,value,metric,score,n`.
pub fn to_tidy_csv(entries: &[EvalEntry]) -> String {
    let mut out = String::from("method,run,group,value,metric,score,n\n");
    for e in entries {
        for r in &e.metrics {
            out.push_str(&format!(
                "{},{},{},{},{},{:.4},{}\n",
                csv_field(&e.method),
                csv_field(&e.link),
                csv_field(&r.group),
                csv_field(&r.value),
                csv_field(&r.metric),
                r.score,
                r.n
            ));
        }
    }
    out
}

/// Escapes LaTeX's special characters in text.
pub fn latex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(group: &str, value: &str, metric: &str, score: f64, n: usize) -> MetricRow {
        MetricRow {
            group: group.into(),
            value: value.into(),
            metric: metric.into(),
            score,
            n,
        }
    }

    fn entries() -> Vec<EvalEntry> {
        vec![
            EvalEntry {
                method: "vanilla".into(),
                link: "http://h/evals/aaa".into(),
                metrics: vec![
                    row("all", "all", "DS", 40.0, 10),
                    row("all", "all", "Fluency", 6.5, 10),
                    row("category", "mental harm", "DS", 20.0, 4),
                ],
            },
            EvalEntry {
                method: "dinm".into(),
                link: "http://h/evals/bbb".into(),
                metrics: vec![
                    row("all", "all", "DS", 96.666, 10),
                    row("all", "all", "Fluency", 6.504, 10),
                    row("all", "all", "CSum", 19.2, 8),
                    row("category", "mental harm", "DS", 100.0, 4),
                ],
            },
        ]
    }

    #[test]
    fn table_has_the_columns_some_run_has_in_the_paper_order() {
        let t = MetricTable::build(&entries(), "all", "all");
        assert_eq!(t.columns, ["DS", "Fluency", "CSum"]);
        assert_eq!(t.rows[0].values, [Some(40.0), Some(6.5), None]);
        assert_eq!(t.rows[1].n, Some(10));
        assert_eq!(t.best(), [Some(96.666), Some(6.504), None]);
        let c = MetricTable::build(&entries(), "category", "mental harm");
        assert_eq!(c.columns, ["DS"]);
        assert_eq!(c.rows[1].values, [Some(100.0)]);
    }

    #[test]
    fn latex_is_booktabs_with_best_bold_ties_as_printed_and_links() {
        let t = MetricTable::build(&entries(), "all", "all");
        let tex = t.to_latex("SafeEdit results on SmolLM2-135M_Instruct");
        assert!(tex.contains("% vanilla: http://h/evals/aaa\n"));
        assert!(tex.contains("% dinm: http://h/evals/bbb\n"));
        assert!(tex.contains("\\begin{tabular}{lrrr}\n\\toprule\n"));
        assert!(tex.contains("Method & DS & Fluency & CSum \\\\\n\\midrule\n"));
        // 6.504 and 6.5 print as 6.50 and 6.50: both best as printed.
        assert!(
            tex.contains("vanilla & 40.00 & \\textbf{6.50} & -- \\\\\n"),
            "{tex}"
        );
        assert!(
            tex.contains("dinm & \\textbf{96.67} & \\textbf{6.50} & 19.20 \\\\\n"),
            "{tex}"
        );
        assert!(tex.contains("\\bottomrule"));
        assert!(tex.contains("\\caption{SafeEdit results on SmolLM2-135M\\_Instruct}"));
    }

    #[test]
    fn tidy_csv_has_one_number_per_line() {
        let csv = to_tidy_csv(&entries());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "method,run,group,value,metric,score,n");
        assert_eq!(lines.len(), 1 + 3 + 4);
        assert_eq!(lines[1], "vanilla,http://h/evals/aaa,all,all,DS,40.0000,10");
        assert!(lines.contains(&"dinm,http://h/evals/bbb,category,mental harm,DS,100.0000,4"));
    }

    fn record(slug: &str, method: &str, ds: f64) -> EvalRecord {
        EvalRecord {
            slug: slug.into(),
            created_at: String::new(),
            updated_at: String::new(),
            method: method.into(),
            data: "test-sample".into(),
            model: "m".into(),
            instances: 2,
            run: serde_json::Value::Null,
            metrics: vec![
                row("all", "all", "DS", ds, 2),
                row("category", "mental harm", "DS", ds, 1),
                row("attack", "Text Continuation", "DS", ds, 1),
            ],
        }
    }

    #[test]
    fn results_default_to_the_newest_run_per_method_vanilla_first() {
        // Newest first: d2 is a newer dinm run than d1.
        let mut web = record("w1", "vanilla", 0.0);
        web.run = serde_json::json!({"source": "web app"});
        let all = vec![
            web,
            record("d2", "dinm", 90.0),
            record("v1", "vanilla", 30.0),
            record("d1", "dinm", 80.0),
            record("p1", "prompt", 50.0),
        ];
        let view = ResultsView::build(all.clone(), None, "all", "all").unwrap();
        assert_eq!(view.selected, ["v1", "d2", "p1"]);
        assert_eq!(view.table.rows[1].values, [Some(90.0)]);
        assert_eq!(view.table.rows[1].link, "/evals/d2");
        assert_eq!(
            view.slices,
            [
                ("all".to_string(), "all".to_string()),
                ("category".into(), "mental harm".into()),
                ("attack".into(), "Text Continuation".into()),
            ]
        );
        assert!(
            view.evals.iter().all(|e| e.metrics.is_empty()),
            "the list is light"
        );

        let picked =
            ResultsView::build(all.clone(), Some("d1,d2,d1"), "category", "mental harm").unwrap();
        assert_eq!(
            picked.selected,
            ["d1", "d2"],
            "duplicates dropped, order kept"
        );
        assert_eq!(picked.table.rows[0].values, [Some(80.0)]);

        let err = ResultsView::build(all.clone(), Some("d1,nope"), "all", "all").unwrap_err();
        assert_eq!(err.to_string(), "no evaluation or edit run `nope`");
        let err = ResultsView::build(all, None, "colour", "red").unwrap_err();
        assert!(err.to_string().contains("unknown group"));
    }

    #[test]
    fn an_edit_run_joins_the_table_as_its_edited_model_on_its_instance() {
        let run: crate::run::RunRecord = serde_json::from_value(serde_json::json!({
            "slug": "editrun", "kind": "dinm-edit", "created_at": "2026-01-01T00:00:00.000Z",
            "request": {"split": "test", "id": 3, "method": "dinm", "overrides": {}},
            "instance": {"category": "offensiveness", "attack": "AIM", "question": "q?"},
            "config": {}, "seed": 0, "model": "tiny", "model_path": "tiny",
            "model_checksum": "none", "backend": "test",
            "judge": {"id": "j", "version": "v", "description": "d"},
            "version": "0", "git_commit": "abc",
            "outcome": {
                "layer": 1, "tensor": "t", "distances": [], "steps": [],
                "stopped_early": false, "delta_norm": 0.5,
                "comparisons": [
                    {"kind": "DS", "input": "x", "vanilla": "sure", "vanilla_verdict": "unsafe",
                     "edited": "no", "edited_verdict": "safe"},
                    {"kind": "DG_onlyQ", "input": "y", "vanilla": "ok", "vanilla_verdict": "safe",
                     "edited": "sure thing", "edited_verdict": "unsafe"}
                ],
                "seconds": [1.0, 2.0, 3.0]
            }
        }))
        .unwrap();
        let eval = run.as_eval();
        assert!(eval.is_edit_run() && eval.from_web_app());
        assert_eq!(
            (eval.data.as_str(), eval.page()),
            ("test #3", "/runs/editrun".to_string())
        );
        let all = vec![record("v1", "vanilla", 30.0), eval];
        let view = ResultsView::build(all.clone(), None, "all", "all").unwrap();
        assert_eq!(view.selected, ["v1"], "picked only");
        let view = ResultsView::build(all, Some("v1,editrun"), "all", "all").unwrap();
        let row = &view.table.rows[1];
        assert_eq!(
            (row.method.as_str(), row.link.as_str()),
            ("dinm", "/runs/editrun")
        );
        let ds = view.table.columns.iter().position(|c| c == "DS").unwrap();
        assert_eq!(row.values[ds], Some(100.0), "the edited answer's verdict");
        let only_q = view
            .table
            .columns
            .iter()
            .position(|c| c == "DG_onlyQ")
            .unwrap();
        assert_eq!(row.values[only_q], Some(0.0));
    }

    #[test]
    fn latex_escapes_specials() {
        assert_eq!(latex_escape("a_b & 5% #1"), "a\\_b \\& 5\\% \\#1");
    }
}
