//! The mechanism analysis report (docs/method.md §Mechanisms): what `safeedit analyze` writes and
//! the app shows. Plain data; the engine computes it.

use serde::{Deserialize, Serialize};

use crate::eval::csv_field;

/// The toxicity probe's quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSummary {
    /// What it was trained on.
    pub data: String,
    /// Training examples `[non-toxic, toxic]`.
    pub train_counts: [usize; 2],
    /// Held-out examples `[non-toxic, toxic]`.
    pub held_out_counts: [usize; 2],
    /// Held-out accuracy (0–1).
    pub held_out_accuracy: f64,
    /// Held-out `[true positive, false positive, true negative, false negative]` (toxic =
    /// positive).
    pub held_out_confusion: [usize; 4],
    /// Tokens pooled per text.
    pub max_tokens: usize,
}

/// The toxicity of one model's region against vanilla's at the same layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionChange {
    /// The layer whose `down_proj` is the region.
    pub layer: usize,
    /// Vanilla's mean column cosine with the probe, all columns.
    pub vanilla_all: f64,
    /// The method's, all columns.
    pub method_all: f64,
    /// Vanilla's, over its top-k columns.
    pub vanilla_top: f64,
    /// The method's, over the same columns.
    pub method_top: f64,
    /// `(vanilla − method) / |vanilla| × 100`, all columns.
    pub reduction_all: Option<f64>,
    /// The same over the top-k columns.
    pub reduction_top: Option<f64>,
}

/// One analysed model of a method (one edit, or one fine-tuned model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMechanism {
    /// What the model is: `instance 2` for an edit, a path for a fine-tuned model.
    pub label: String,
    /// The edited layer, for single-layer edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_layer: Option<usize>,
    /// The region: the edited layer for single-layer edits, the analysis layer otherwise.
    pub region: RegionChange,
    /// Activation shift at the analysis layer (% of vanilla's norm), token-mean pooling.
    pub shift_token_mean: Option<f64>,
    /// The same with last-token pooling.
    pub shift_last_token: Option<f64>,
}

/// One method over its models (means over edits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodMechanism {
    /// `dinm`, `ftl`, `sft`, ...
    pub method: String,
    /// Every model analysed.
    pub models: Vec<ModelMechanism>,
    /// Mean toxicity reduction over models, all columns (%).
    pub reduction_all: Option<f64>,
    /// Mean toxicity reduction over models, top-k columns (%).
    pub reduction_top: Option<f64>,
    /// Mean activation shift, token-mean pooling (%).
    pub shift_token_mean: Option<f64>,
    /// Mean activation shift, last-token pooling (%).
    pub shift_last_token: Option<f64>,
    /// Column cosines with the probe at the analysis layer, of the first model (for the
    /// before/after distribution).
    pub cosines: Vec<f32>,
}

/// The top tokens of one value vector in each model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensRow {
    /// The `down_proj` column.
    pub column: usize,
    /// Its cosine with the probe in vanilla.
    pub cosine: f32,
    /// `(model, tokens)`: vanilla first, then each method's first model.
    pub tokens: Vec<(String, Vec<String>)>,
}

/// The Fig. 8 view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectionView {
    /// The models (vanilla first).
    pub models: Vec<String>,
    /// Instance ids of the inputs.
    pub inputs: Vec<u64>,
    /// `x[model][input]`: projection on the shift direction.
    pub x: Vec<Vec<f64>>,
    /// `y[model][input]`: projection on the first principal component (δ removed).
    pub y: Vec<Vec<f64>>,
    /// ‖δ‖.
    pub shift_norm: f64,
    /// Variance share of the first component.
    pub explained: f64,
    /// Whether each input's vanilla last-token activation puts the region's top-k columns above
    /// their mean over inputs (the colour of the paper's Fig. 8; its criterion is not given).
    pub activates_region: Vec<bool>,
}

/// Everything `safeedit analyze` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MechanismReport {
    /// Model name.
    pub model: String,
    /// The precision its matrices were kept in, when not f32 (`bf16`, `f16`; `--dtype`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// The analysis layer ℓ (the toxic layer).
    pub layer: usize,
    /// How ℓ was chosen.
    pub layer_source: String,
    /// Columns in the top-k measure.
    pub top_k: usize,
    /// Adversarial inputs averaged for the activation means.
    pub inputs: usize,
    /// The probe.
    pub probe: ProbeSummary,
    /// Vanilla's column cosines at ℓ.
    pub vanilla_cosines: Vec<f32>,
    /// Each compared method.
    pub methods: Vec<MethodMechanism>,
    /// The projection view.
    pub projection: ProjectionView,
    /// Logit lens of the most toxic value vectors.
    pub lens: Vec<LensRow>,
}

/// The per-method numbers as tidy CSV: `method,metric,value,n`.
pub fn to_csv(report: &MechanismReport) -> String {
    let mut out = String::from("method,metric,value,n\n");
    let mut row = |method: &str, metric: &str, value: Option<f64>, n: usize| {
        if let Some(v) = value {
            out.push_str(&format!("{},{metric},{v:.6},{n}\n", csv_field(method)));
        }
    };
    row(
        "probe",
        "held_out_accuracy",
        Some(report.probe.held_out_accuracy * 100.0),
        report.probe.held_out_counts.iter().sum(),
    );
    for m in &report.methods {
        let n = m.models.len();
        let mean = |f: &dyn Fn(&ModelMechanism) -> f64| {
            (n > 0).then(|| m.models.iter().map(f).sum::<f64>() / n as f64)
        };
        row(
            &m.method,
            "region_toxicity_all",
            mean(&|x| x.region.method_all),
            n,
        );
        row(
            &m.method,
            "region_toxicity_top",
            mean(&|x| x.region.method_top),
            n,
        );
        row(&m.method, "toxicity_reduction_all_pct", m.reduction_all, n);
        row(&m.method, "toxicity_reduction_top_pct", m.reduction_top, n);
        row(
            &m.method,
            "activation_shift_token_mean_pct",
            m.shift_token_mean,
            n,
        );
        row(
            &m.method,
            "activation_shift_last_token_pct",
            m.shift_last_token,
            n,
        );
    }
    out
}

/// A stored analysis: what `safeedit analyze` wrote, under a shareable slug.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRecord {
    /// Random slug (`/mechanisms/{slug}`).
    pub slug: String,
    /// RFC 3339 time it was stored.
    pub created_at: String,
    /// The analysed model's name.
    pub model: String,
    /// The compared methods, vanilla excluded.
    pub methods: Vec<String>,
    /// The settings `analyze` recorded (`analysis.json`'s `run`).
    pub run: serde_json::Value,
    /// The numbers.
    pub report: MechanismReport,
}

/// One line of the analyses list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisSummary {
    /// Slug.
    pub slug: String,
    /// When stored.
    pub created_at: String,
    /// Model name.
    pub model: String,
    /// Compared methods.
    pub methods: Vec<String>,
    /// The analysis layer.
    pub layer: usize,
    /// Activation inputs.
    pub inputs: usize,
}

impl AnalysisRecord {
    /// Its line in the list.
    pub fn summary(&self) -> AnalysisSummary {
        AnalysisSummary {
            slug: self.slug.clone(),
            created_at: self.created_at.clone(),
            model: self.model.clone(),
            methods: self.methods.clone(),
            layer: self.report.layer,
            inputs: self.report.inputs,
        }
    }
}

/// A column of the comparison table: its heading and a method's value.
pub type TableColumn = (&'static str, fn(&MethodMechanism) -> Option<f64>);

/// The comparison table's columns.
pub const TABLE_COLUMNS: [TableColumn; 4] = [
    ("Toxicity reduction, all columns (%)", |m| m.reduction_all),
    ("Toxicity reduction, top-k (%)", |m| m.reduction_top),
    ("Activation shift, token mean (%)", |m| m.shift_token_mean),
    ("Activation shift, last token (%)", |m| m.shift_last_token),
];

/// The comparison table (the paper's Fig. 7 numbers) as a booktabs LaTeX table: one row per
/// method with N, the models it averages; the analysis link and settings in comments.
pub fn to_latex(report: &MechanismReport, link: &str) -> String {
    use crate::table::latex_escape;
    let mut out = String::new();
    out.push_str("% Mechanism analysis made by SafeEdit Studio\n");
    out.push_str(&format!("% {link}\n"));
    out.push_str(&format!(
        "% model {}, layer {} ({}), top-k {}, {} inputs\n",
        report.model, report.layer, report.layer_source, report.top_k, report.inputs
    ));
    out.push_str("% requires \\usepackage{booktabs}\n");
    out.push_str("\\begin{table}[t]\n\\centering\n\\small\n");
    out.push_str("\\begin{tabular}{lrrrrr}\n\\toprule\n");
    out.push_str("Method & \\multicolumn{2}{c}{Toxicity reduction (\\%)} & ");
    out.push_str("\\multicolumn{2}{c}{Activation shift (\\%)} & N \\\\\n");
    out.push_str(&format!(
        " & all & top-{} & token mean & last token & \\\\\n\\midrule\n",
        report.top_k
    ));
    for m in &report.methods {
        out.push_str(&latex_escape(&m.method));
        for (_, value) in TABLE_COLUMNS {
            match value(m) {
                Some(v) => out.push_str(&format!(" & {v:.2}")),
                None => out.push_str(" & --"),
            }
        }
        out.push_str(&format!(" & {} \\\\\n", m.models.len()));
    }
    out.push_str("\\bottomrule\n\\end{tabular}\n");
    out.push_str(&format!(
        "\\caption{{Toxicity of the toxic region (layer {}) and activation shift into it, \\
         relative to the vanilla {}.}}\n",
        report.layer,
        latex_escape(&report.model)
    ));
    out.push_str("\\end{table}\n");
    out
}

/// Mean of the values that exist (`None` when none do).
pub fn mean_some(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.into_iter().flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_is_tidy_and_averages_models() {
        let model = |reduction: f64, shift: f64| ModelMechanism {
            label: "instance 0".into(),
            edited_layer: Some(3),
            region: RegionChange {
                layer: 3,
                vanilla_all: 0.01,
                method_all: 0.01 * (1.0 - reduction / 100.0),
                vanilla_top: 0.2,
                method_top: 0.1,
                reduction_all: Some(reduction),
                reduction_top: Some(50.0),
            },
            shift_token_mean: Some(shift),
            shift_last_token: Some(shift),
        };
        let report = MechanismReport {
            model: "m".into(),
            weights: None,
            layer: 3,
            layer_source: "fixed".into(),
            top_k: 2,
            inputs: 4,
            probe: ProbeSummary {
                data: "d".into(),
                train_counts: [3, 3],
                held_out_counts: [1, 1],
                held_out_accuracy: 0.5,
                held_out_confusion: [1, 1, 0, 0],
                max_tokens: 128,
            },
            vanilla_cosines: vec![],
            methods: vec![MethodMechanism {
                method: "dinm".into(),
                models: vec![model(2.0, 0.0), model(4.0, 0.0)],
                reduction_all: mean_some([Some(2.0), Some(4.0)]),
                reduction_top: Some(50.0),
                shift_token_mean: Some(0.0),
                shift_last_token: Some(0.0),
                cosines: vec![],
            }],
            projection: ProjectionView {
                models: vec![],
                inputs: vec![],
                x: vec![],
                y: vec![],
                shift_norm: 0.0,
                explained: 0.0,
                activates_region: vec![],
            },
            lens: vec![],
        };
        let csv = to_csv(&report);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "method,metric,value,n");
        assert_eq!(lines[1], "probe,held_out_accuracy,50.000000,2");
        assert!(lines.contains(&"dinm,toxicity_reduction_all_pct,3.000000,2"));
        assert!(lines.contains(&"dinm,region_toxicity_all,0.009700,2"));
        assert!(lines.contains(&"dinm,activation_shift_token_mean_pct,0.000000,2"));
        let tex = to_latex(&report, "http://host/mechanisms/abc");
        assert!(tex.contains("% http://host/mechanisms/abc\n"));
        assert!(tex.contains("\\begin{tabular}{lrrrrr}"));
        assert!(tex.contains(" & all & top-"));
        let dinm_row = tex.lines().find(|l| l.starts_with("dinm &")).unwrap();
        assert_eq!(dinm_row.matches('&').count(), 5, "{dinm_row}");
        assert!(dinm_row.ends_with("& 2 \\\\"), "{dinm_row}");
        assert!(dinm_row.contains("& 3.00 &"), "{dinm_row}");
        assert_eq!(mean_some([None, Some(1.0), Some(3.0)]), Some(2.0));
        assert_eq!(mean_some([None]), None);
    }
}
