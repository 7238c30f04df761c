//! `analyze`: the mechanism analysis (docs/method.md §Mechanisms) on one model. A toxicity
//! probe on the vanilla model's final states; the toxic layer ℓ; for each compared method (one
//! model per edit for the editing methods, or a fine-tuned model given as `NAME=PATH`): the
//! toxicity of its toxic region against vanilla's, the shift of the activations entering ℓ's
//! `down_proj` over adversarial inputs, the Fig. 8 projection, and the logit lens of the most
//! toxic value vectors. Writes analysis.json, analysis.csv, analysis.tex and SVG figures.

use std::collections::BTreeMap;
use std::path::PathBuf;

use safeedit_core::mechanism::{
    self, LensRow, MechanismReport, MethodMechanism, ModelMechanism, ProbeSummary, ProjectionView,
    RegionChange, mean_some, to_csv,
};
use safeedit_core::safeedit::Fold;
use safeedit_core::{Method, SafeEditRecord};
use safeedit_engine::analysis::{
    ActivationMeans, ProbeExample, column_cosines, mean_activations, pooled_final_states,
    reduction_rate, region_toxicity, shift_projection, shift_rate, top_columns, top_tokens,
    train_probe,
};
use safeedit_engine::dinm::locate_toxic_layer;
use safeedit_engine::judge::is_held_out;
use safeedit_engine::{LayerParam, WeightDtype, WeightId};
use safeedit_figures::{self as figures, Preset};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backend::{self, Model};
use crate::method::{BaselineOptions, DinmOptions, MethodSettings, edit_for};
use crate::progress::{Event, Progress, ProgressExt};
use crate::publish::{Database, Published, publish_analysis, publish_folder};
use crate::run_dir;
use crate::{PipelineError, Result, ResultExt, bail, data, ensure, judge, paths, provenance};

/// A mechanism analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyzePlan {
    /// Methods compared with vanilla: editing methods (dinm, ftl, dinm-random-layer,
    /// dinm-no-suffix; one model per edit instance) and `NAME=PATH` for a model fine-tuned
    /// elsewhere with the same architecture (e.g. `sft=out/sft`).
    pub methods: Vec<String>,
    /// Where the edit instances come from: `editing`, `test`, or a SafeEdit JSON file.
    pub edit_split: String,
    /// Edit only the first N instances.
    pub edits: Option<usize>,
    /// Adversarial inputs for the activation means [default: all].
    pub inputs: Option<usize>,
    /// Which test prompts feed the activation means (`held-out` for trained models).
    pub fold: Fold,
    /// Inputs in the projection view (the paper's Fig. 8 uses 30).
    pub projection_inputs: usize,
    /// The analysis layer [default: the layer most DINM edits chose, else located].
    pub region_layer: Option<usize>,
    /// Columns in the top-k toxicity measure.
    pub top_k: usize,
    /// Value vectors in the logit lens.
    pub lens_vectors: usize,
    /// Tokens per value vector in the logit lens.
    pub lens_tokens: usize,
    /// Tokens pooled per probe text.
    pub probe_tokens: usize,
    /// The model [default: the small model].
    pub model: Option<PathBuf>,
    /// The precision the model (and every `NAME=PATH` model) keeps its matrices in; edits
    /// train their layer in f32.
    pub dtype: WeightDtype,
    /// Output folder: analysis.json, analysis.csv, analysis.tex, figures/*.svg.
    pub out: PathBuf,
    /// DINM settings of the editing methods.
    pub dinm: DinmOptions,
    /// FT-L and ablation settings.
    pub baselines: BaselineOptions,
    /// Where the analysis is stored (`None`: files only).
    pub database: Option<Database>,
}

impl AnalyzePlan {
    /// `safeedit analyze`'s defaults (vanilla, DINM and FT-L on the three editing instances),
    /// writing to `out`.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            methods: ["vanilla", "dinm", "ftl"].map(String::from).to_vec(),
            edit_split: "editing".into(),
            edits: None,
            inputs: None,
            fold: Fold::All,
            projection_inputs: 30,
            region_layer: None,
            top_k: 128,
            lens_vectors: 5,
            lens_tokens: 8,
            probe_tokens: 128,
            model: None,
            dtype: WeightDtype::F32,
            out: out.into(),
            dinm: DinmOptions::default(),
            baselines: BaselineOptions::default(),
            database: Some(Database::default()),
        }
    }
}

/// What an analysis produced.
#[derive(Debug, Clone)]
pub struct AnalyzeSummary {
    /// The report.
    pub report: MechanismReport,
    /// The output folder.
    pub out: PathBuf,
    /// The runs database's answer.
    pub published: Published,
}

/// A compared method, parsed.
enum Compared {
    Edit(Method),
    Model(String, PathBuf),
}

/// Checks `--methods` as [`run`] reads it (unknown methods, methods that do not change the
/// model, nothing to compare).
pub fn check_methods(methods: &[String]) -> Result<()> {
    parse_methods(methods).map(|_| ())
}

fn parse_methods(methods: &[String]) -> Result<Vec<(String, Compared)>> {
    let mut out = Vec::new();
    for m in methods.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
        if m == "vanilla" {
            continue;
        }
        if let Some((name, path)) = m.split_once('=') {
            ensure!(!name.is_empty(), "--methods: `{m}` needs a name before `=`");
            out.push((name.to_string(), Compared::Model(name.into(), path.into())));
            continue;
        }
        let Ok(method) = m.parse::<Method>() else {
            bail!("--methods: unknown method `{m}`");
        };
        ensure!(
            !method.is_trained(),
            "--methods: `{m}` is a trained model; name its directory, e.g. `{m}=runs/{m}` \
             (from `safeedit train {m}`)"
        );
        ensure!(
            method.edits(),
            "--methods: `{m}` does not change the model; analyse dinm, ftl, \
             dinm-random-layer, dinm-no-suffix or NAME=PATH"
        );
        out.push((m.to_string(), Compared::Edit(method)));
    }
    ensure!(
        !out.is_empty(),
        "--methods: nothing to compare with vanilla"
    );
    Ok(out)
}

/// One model under analysis.
struct Analysed {
    label: String,
    edited_layer: Option<usize>,
    lm: Model,
}

/// Runs the analysis, writes its files and stores it.
pub fn run(plan: &AnalyzePlan, progress: &mut dyn Progress) -> Result<AnalyzeSummary> {
    let args = plan;
    let compared = parse_methods(&args.methods)?;
    let _lock = run_dir::lock(&args.out)?;
    run_dir::create(&args.out.join("figures"))?;
    let model_path = paths::model_or_default(args.model.clone())?;
    let lm = backend::load_as(&model_path, args.dtype, progress)?;
    let format = lm.prompt_format.clone();
    let mut settings = MethodSettings::new(&lm, &args.dinm, &args.baselines)?;

    // The probe (docs/method.md §Mechanisms).
    let examples = judge::training_examples()?;
    let probe_examples: Vec<ProbeExample> = examples
        .iter()
        .map(|e| ProbeExample {
            text: e.text.clone(),
            toxic: e.is_unsafe,
            held_out: is_held_out(&e.group),
        })
        .collect();
    progress.phase("probe", "texts", probe_examples.len());
    let mut pooled = Vec::with_capacity(probe_examples.len());
    for chunk in probe_examples.chunks(16) {
        progress.check()?;
        let texts: Vec<String> = chunk.iter().map(|e| e.text.clone()).collect();
        pooled.extend(pooled_final_states(&lm, &texts, args.probe_tokens)?);
        progress.event(Event::Advance(chunk.len()));
    }
    progress.event(Event::PhaseDone);
    let probe = train_probe(&pooled, &probe_examples, 1.0, args.probe_tokens)?;
    progress.note(format!(
        "probe: held-out accuracy {:.1}% ({} texts)",
        probe.held_out.accuracy() * 100.0,
        probe.held_out.total()
    ));

    // The models: one per edit for editing methods.
    let edit_records = edit_records(args)?;
    let mut models: Vec<(String, Vec<Analysed>)> = Vec::new();
    for (name, c) in &compared {
        let analysed = match c {
            Compared::Edit(method) => {
                progress.phase(name.clone(), "edits", edit_records.len());
                let mut out = Vec::new();
                for record in &edit_records {
                    progress.check()?;
                    let (edited, summary) =
                        edit_for(*method, &lm, record, &mut settings, &format, progress)?
                            .ok_or_else(|| {
                                PipelineError::Invalid(format!("{method} did not edit"))
                            })?;
                    out.push(Analysed {
                        label: format!("instance {}", record.id),
                        edited_layer: Some(summary.layer),
                        lm: edited,
                    });
                    progress.event(Event::Advance(1));
                }
                progress.event(Event::PhaseDone);
                out
            }
            Compared::Model(label, path) => {
                let other = backend::load_as(path, args.dtype, progress)
                    .with_context(|| format!("--methods {label}={}", path.display()))?;
                ensure!(
                    other.config.d_model == lm.config.d_model
                        && other.config.d_ff == lm.config.d_ff
                        && other.config.n_layers == lm.config.n_layers,
                    "--methods {label}={}: not the same architecture as {}",
                    path.display(),
                    lm.name
                );
                vec![Analysed {
                    label: path.display().to_string(),
                    edited_layer: None,
                    lm: other,
                }]
            }
        };
        models.push((name.clone(), analysed));
    }

    // The analysis layer.
    let (layer, layer_source) = match args.region_layer {
        Some(l) => {
            ensure!(
                l < lm.config.n_layers,
                "--region-layer {l}: the model has {} layers",
                lm.config.n_layers
            );
            (l, "--region-layer".to_string())
        }
        None => {
            let mut votes: BTreeMap<usize, usize> = BTreeMap::new();
            for (name, ms) in &models {
                if name == "dinm" {
                    for m in ms {
                        *votes.entry(m.edited_layer.expect("edits")).or_default() += 1;
                    }
                }
            }
            match votes
                .iter()
                .max_by_key(|(l, n)| (**n, std::cmp::Reverse(**l)))
            {
                Some((l, n)) => (*l, format!("located by {n} of the DINM edits")),
                None => {
                    let Some(record) = edit_records.first() else {
                        bail!("no edit instances");
                    };
                    let found = locate_toxic_layer(
                        &lm,
                        &record.safe_generation,
                        &record.unsafe_generation,
                        settings.dinm.padding_side,
                    )?;
                    (found.layer, format!("located on instance {}", record.id))
                }
            }
        }
    };
    progress.note(format!("analysis layer {layer} ({layer_source})"));

    // Inputs for the activation means: the shipped test prompts, as the model sees them.
    let fold = args.fold;
    let mut inputs = fold.select(data::load("test-sample")?);
    if let Some(n) = args.inputs {
        inputs.truncate(n);
    }
    ensure!(!inputs.is_empty(), "no activation inputs");
    let prompts = inputs
        .iter()
        .map(|r| lm.tokenizer.encode_prompt(&r.adversarial_prompt, &format))
        .collect::<Result<Vec<_>, _>>()?;
    let means = |m: &Model, label: &str, progress: &mut dyn Progress| -> Result<ActivationMeans> {
        progress.check()?;
        progress.phase(label, "inputs", prompts.len());
        let out = mean_activations(&m.model, &prompts, layer, &m.device, &mut |_| {
            progress.event(Event::Advance(1))
        })?;
        progress.event(Event::PhaseDone);
        Ok(out)
    };
    let vanilla_means = means(&lm, "vanilla activations", progress)?;

    let probe_w = &probe.probe.weights;
    let cosines = |m: &Model, l: usize| -> Vec<f32> {
        let w = m
            .model
            .export(WeightId::layer(l, LayerParam::DownProj))
            .expect("every layer has a down_proj");
        column_cosines(&w.data, w.shape[0], w.shape[1], probe_w)
    };
    let mut vanilla_cos: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
    vanilla_cos.insert(layer, cosines(&lm, layer));

    let mut methods = Vec::new();
    let mut projection_models = vec![("vanilla".to_string(), vanilla_means.mid_last.clone())];
    for (name, ms) in &models {
        let mut rows = Vec::new();
        let mut first_cosines = Vec::new();
        for (k, m) in ms.iter().enumerate() {
            let region_layer = m.edited_layer.unwrap_or(layer);
            let base = vanilla_cos
                .entry(region_layer)
                .or_insert_with(|| cosines(&lm, region_layer))
                .clone();
            let top = top_columns(&base, args.top_k);
            let mine = cosines(&m.lm, region_layer);
            let (v, t) = (region_toxicity(&base, &top), region_toxicity(&mine, &top));
            let act = means(&m.lm, &format!("{name} {}", m.label), progress)?;
            if k == 0 {
                first_cosines = if region_layer == layer {
                    mine.clone()
                } else {
                    cosines(&m.lm, layer)
                };
                projection_models.push((name.clone(), act.mid_last.clone()));
            }
            rows.push(ModelMechanism {
                label: m.label.clone(),
                edited_layer: m.edited_layer,
                region: RegionChange {
                    layer: region_layer,
                    vanilla_all: v.all_columns,
                    method_all: t.all_columns,
                    vanilla_top: v.top_columns,
                    method_top: t.top_columns,
                    reduction_all: reduction_rate(v.all_columns, t.all_columns),
                    reduction_top: reduction_rate(v.top_columns, t.top_columns),
                },
                shift_token_mean: shift_rate(&vanilla_means.token_mean, &act.token_mean),
                shift_last_token: shift_rate(&vanilla_means.last_token, &act.last_token),
            });
        }
        methods.push(MethodMechanism {
            method: name.clone(),
            reduction_all: mean_some(rows.iter().map(|r| r.region.reduction_all)),
            reduction_top: mean_some(rows.iter().map(|r| r.region.reduction_top)),
            shift_token_mean: mean_some(rows.iter().map(|r| r.shift_token_mean)),
            shift_last_token: mean_some(rows.iter().map(|r| r.shift_last_token)),
            models: rows,
            cosines: first_cosines,
        });
    }

    // Fig. 8: the first inputs' mid residuals in every model.
    let p = args.projection_inputs.min(prompts.len());
    let points: Vec<Vec<Vec<f32>>> = projection_models
        .iter()
        .map(|(_, mids)| mids[..p].to_vec())
        .collect();
    let proj = shift_projection(&points);
    let vanilla_top = top_columns(&vanilla_cos[&layer], args.top_k);
    let activates = activates_region(&vanilla_means.last_by_input[..p], &vanilla_top);
    let projection = ProjectionView {
        models: projection_models.iter().map(|(n, _)| n.clone()).collect(),
        inputs: inputs[..p].iter().map(|r| r.id).collect(),
        x: proj.x,
        y: proj.y,
        shift_norm: proj.shift_norm,
        explained: proj.explained,
        activates_region: activates,
    };

    // Logit lens of the most toxic value vectors at ℓ.
    let mut lens = Vec::new();
    for &column in vanilla_top.iter().take(args.lens_vectors) {
        let mut tokens = Vec::new();
        let mut lens_of = |label: &str, m: &Model| -> Result<()> {
            let w = m
                .model
                .export(WeightId::layer(layer, LayerParam::DownProj))
                .expect("every layer has a down_proj");
            let (rows, cols) = (w.shape[0], w.shape[1]);
            let v: Vec<f32> = (0..rows).map(|i| w.data[i * cols + column]).collect();
            let top = top_tokens(m, &v, args.lens_tokens)?;
            tokens.push((label.to_string(), top.into_iter().map(|t| t.text).collect()));
            Ok(())
        };
        lens_of("vanilla", &lm)?;
        for (name, ms) in &models {
            lens_of(name, &ms[0].lm)?;
        }
        lens.push(LensRow {
            column,
            cosine: vanilla_cos[&layer][column],
            tokens,
        });
    }

    let c = probe.held_out;
    let report = MechanismReport {
        model: lm.name.clone(),
        weights: (!args.dtype.is_f32()).then(|| args.dtype.as_str().to_string()),
        layer,
        layer_source,
        top_k: args.top_k,
        inputs: prompts.len(),
        probe: ProbeSummary {
            data: "SafeEdit unsafe (toxic) vs safe generations + AlpacaEval answers (non-toxic), \
                   split by question"
                .into(),
            train_counts: probe.train_counts,
            held_out_counts: probe.held_out_counts,
            held_out_accuracy: c.accuracy(),
            held_out_confusion: [
                c.true_positive,
                c.false_positive,
                c.true_negative,
                c.false_negative,
            ],
            max_tokens: args.probe_tokens,
        },
        vanilla_cosines: vanilla_cos[&layer].clone(),
        methods,
        projection,
        lens,
    };
    let json = json!({
        "run": {
            "model": model_path.display().to_string(),
            "backend": backend::NAME,
            "prompt_format": format,
            "methods": args.methods,
            "edit_split": args.edit_split,
            "inputs_fold": fold.as_str(),
            "edit_instances": edit_records.iter().map(|r| r.id).collect::<Vec<_>>(),
            "settings": {
                "dinm": settings.dinm,
                "ftl": settings.ftl,
                "seed": settings.seed,
            },
            "model_checksum": provenance::model_checksum(&model_path),
            "version": provenance::VERSION,
            "git_commit": provenance::GIT_COMMIT,
        },
        "report": report,
    });
    run_dir::write_json(&args.out.join("analysis.json"), &json)?;
    run_dir::write(&args.out.join("analysis.csv"), to_csv(&report))?;
    for (chart, svg) in figures::mechanism_charts(&report, Preset::Column)? {
        run_dir::write(&args.out.join("figures").join(format!("{chart}.svg")), svg)?;
    }
    run_dir::write(
        &args.out.join("analysis.tex"),
        mechanism::to_latex(&report, &args.out.display().to_string()),
    )?;
    let published = publish_folder(args.database.as_ref(), |p| publish_analysis(&args.out, p));
    Ok(AnalyzeSummary {
        report,
        out: args.out.clone(),
        published,
    })
}

fn edit_records(args: &AnalyzePlan) -> Result<Vec<SafeEditRecord>> {
    let source = match args.edit_split.as_str() {
        "editing" => "editing-instances",
        "test" => "test-sample",
        path => path,
    };
    let mut records = data::load(source)?;
    if let Some(n) = args.edits {
        records.truncate(n);
    }
    ensure!(!records.is_empty(), "no edit instances in {source}");
    Ok(records)
}

/// Whether each input's last-token activation of the region's top columns is above that
/// column set's mean over the inputs.
fn activates_region(last_by_input: &[Vec<f32>], top: &[usize]) -> Vec<bool> {
    let scores: Vec<f64> = last_by_input
        .iter()
        .map(|row| top.iter().map(|&j| row[j] as f64).sum::<f64>())
        .collect();
    let mean = scores.iter().sum::<f64>() / scores.len().max(1) as f64;
    scores.into_iter().map(|s| s > mean).collect()
}

#[cfg(test)]
mod tests {
    use safeedit_engine::baselines::Objective;

    use super::*;
    use crate::Quiet;
    use crate::testutil::{database_in, folder_slug, tiny_model, tiny_train, with_store};

    /// Two edits, 3 inputs, a small probe and lens on the tiny model, stored in `out/db`.
    fn plan(out: &std::path::Path, methods: &str) -> AnalyzePlan {
        let model = tiny_model();
        AnalyzePlan {
            methods: methods.split(',').map(str::to_string).collect(),
            edits: Some(2),
            inputs: Some(3),
            projection_inputs: 3,
            top_k: 16,
            lens_vectors: 2,
            lens_tokens: 3,
            probe_tokens: 32,
            model: model.model,
            dinm: model.dinm,
            baselines: BaselineOptions {
                ftl_steps: Some(2),
                ..BaselineOptions::default()
            },
            database: database_in(out),
            ..AnalyzePlan::new(out)
        }
    }

    #[test]
    fn analysis_of_dinm_and_ftl_writes_report_csv_and_figures() {
        let dir = tempfile::tempdir().unwrap();
        run(&plan(dir.path(), "vanilla,dinm,ftl"), &mut Quiet).unwrap();
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("analysis.json")).unwrap(),
        )
        .unwrap();
        let report: MechanismReport = serde_json::from_value(json["report"].clone()).unwrap();
        assert_eq!(report.inputs, 3);
        assert_eq!(
            report.vanilla_cosines.len(),
            128,
            "one cosine per d_ff column"
        );
        assert!(report.probe.held_out_counts.iter().sum::<usize>() > 0);
        let names: Vec<&str> = report.methods.iter().map(|m| m.method.as_str()).collect();
        assert_eq!(names, ["dinm", "ftl"]);
        let dinm = &report.methods[0];
        assert_eq!(dinm.models.len(), 2, "one model per edit");
        for m in &dinm.models {
            let edited = m.edited_layer.unwrap();
            assert_eq!(m.region.layer, edited);
            assert!(
                m.region.method_all != m.region.vanilla_all,
                "the edit moved the region"
            );
            if edited >= report.layer {
                // docs/method.md §Mechanisms: nothing before or at the edited down_proj's input
                // moves.
                assert_eq!(m.shift_token_mean, Some(0.0));
                assert_eq!(m.shift_last_token, Some(0.0));
            }
        }
        assert_eq!(report.projection.models, ["vanilla", "dinm", "ftl"]);
        assert_eq!(report.projection.x.len(), 3);
        assert_eq!(report.projection.inputs.len(), 3);
        assert_eq!(report.lens.len(), 2);
        assert_eq!(report.lens[0].tokens.len(), 3, "vanilla, dinm, ftl");
        // Stored under the folder's slug, re-publishing keeps the link.
        let slug = folder_slug(dir.path());
        let stored = with_store(dir.path(), async |store| {
            store
                .analysis(&slug)
                .await
                .unwrap()
                .expect("stored analysis")
        });
        assert_eq!(stored.report, report);
        assert_eq!(stored.methods, ["dinm", "ftl"]);
        assert_eq!(stored.run["edit_split"], "editing");
        assert!(
            std::fs::read_to_string(dir.path().join("analysis.tex"))
                .unwrap()
                .contains("\\toprule")
        );
        let csv = std::fs::read_to_string(dir.path().join("analysis.csv")).unwrap();
        assert!(csv.starts_with("method,metric,value,n\nprobe,held_out_accuracy,"));
        assert!(csv.contains("\nftl,toxicity_reduction_all_pct,"));
        for chart in figures::MECHANISM_CHARTS {
            let svg =
                std::fs::read_to_string(dir.path().join(format!("figures/{chart}.svg"))).unwrap();
            assert!(svg.starts_with("<svg width=\"3.031in\""), "{chart}");
        }
    }

    #[test]
    fn a_model_trained_by_safeedit_train_is_analysed_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let sft = dir.path().join("sft");
        crate::train::run(&tiny_train(Objective::Sft, 2, &sft), &mut Quiet).unwrap();
        let out = dir.path().join("analysis");
        let mut a = plan(&out, &format!("vanilla,sft={}", sft.display()));
        a.fold = Fold::HeldOut;
        a.region_layer = Some(1);
        run(&a, &mut Quiet).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("analysis.json")).unwrap())
                .unwrap();
        assert_eq!(json["run"]["inputs_fold"], "held-out");
        let report: MechanismReport = serde_json::from_value(json["report"].clone()).unwrap();
        let m = &report.methods[0];
        assert_eq!(m.method, "sft");
        assert_eq!(m.models[0].edited_layer, None);
        // Full fine-tuning moves everything, the activations entering the layer included.
        assert!(m.shift_token_mean.unwrap() > 0.0);
        assert!(m.models[0].region.method_all != m.models[0].region.vanilla_all);
    }

    #[test]
    fn methods_are_checked_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        for (methods, needle) in [
            ("vanilla", "nothing to compare"),
            ("prompt", "does not change the model"),
            ("dpo2", "unknown method `dpo2`"),
            ("=x", "needs a name"),
            ("sft", "is a trained model"),
        ] {
            let err = run(&plan(dir.path(), methods), &mut Quiet).unwrap_err();
            assert!(err.to_string().contains(needle), "{methods}: {err}");
        }
        let err = run(&plan(dir.path(), "sft=/nonexistent/model"), &mut Quiet).unwrap_err();
        assert!(err.to_string().contains("sft=/nonexistent/model"), "{err}");
    }
}
