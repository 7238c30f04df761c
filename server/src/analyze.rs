//! `safeedit analyze`: the mechanism analysis of dinm_spec.md §5 on one model. A toxicity probe
//! on the vanilla model's final states; the toxic layer ℓ; for each compared method (one model
//! per edit for the editing methods, or a fine-tuned model given as `NAME=PATH`): the toxicity
//! of its toxic region against vanilla's, the shift of the activations entering ℓ's `down_proj`
//! over adversarial inputs, the Fig. 8 projection, and the logit lens of the most toxic value
//! vectors. Writes analysis.json, analysis.csv and SVG figures.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use safeedit_core::SafeEditRecord;
use safeedit_core::mechanism::{
    self, LensRow, MechanismReport, MethodMechanism, ModelMechanism, ProbeSummary, ProjectionView,
    RegionChange, mean_some, to_csv,
};
use safeedit_engine::analysis::{
    ActivationMeans, ProbeExample, column_cosines, mean_activations, pooled_final_states,
    reduction_rate, region_toxicity, shift_projection, shift_rate, top_columns, top_tokens,
    train_probe,
};
use safeedit_engine::dinm::locate_toxic_layer;
use safeedit_engine::judge::is_held_out;
use safeedit_engine::{LanguageModel, LayerParam, WeightId};
use serde_json::json;

use crate::edit::DinmArgs;
use crate::eval::{BaselineArgs, Method, MethodSettings, edit_for};
use crate::{backend, data, judge, paths, runs};
use safeedit_figures::{self as figures, Preset};

type Lm = LanguageModel<backend::Backend>;

/// Arguments of `safeedit analyze`.
#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// Methods compared with vanilla: editing methods (dinm, ftl, dinm-random-layer,
    /// dinm-no-suffix; one model per edit instance) and `NAME=PATH` for a model fine-tuned
    /// elsewhere with the same architecture (e.g. `sft=out/sft`).
    #[arg(long, value_delimiter = ',', default_value = "vanilla,dinm,ftl")]
    pub methods: Vec<String>,
    /// Where the edit instances come from: `editing` (the three editing instances), `test`, or a
    /// SafeEdit JSON file.
    #[arg(long, default_value = "editing")]
    pub edit_split: String,
    /// Edit only the first N instances.
    #[arg(long)]
    pub edits: Option<usize>,
    /// Adversarial inputs (shipped test prompts) for the activation means [default: all].
    #[arg(long)]
    pub inputs: Option<usize>,
    /// Which test prompts feed the activation means: `all`, or `held-out` when a compared model
    /// was trained on the shipped sample's `train` fold.
    #[arg(long, value_enum, default_value = "all")]
    pub fold: crate::train::FoldArg,
    /// Inputs in the projection view (the paper's Fig. 8 uses 30).
    #[arg(long, default_value_t = 30)]
    pub projection_inputs: usize,
    /// The analysis layer [default: the layer most DINM edits chose, else located on the first
    /// edit instance].
    #[arg(long)]
    pub region_layer: Option<usize>,
    /// Columns in the top-k toxicity measure.
    #[arg(long, default_value_t = 128)]
    pub top_k: usize,
    /// Value vectors in the logit lens.
    #[arg(long, default_value_t = 5)]
    pub lens_vectors: usize,
    /// Tokens per value vector in the logit lens.
    #[arg(long, default_value_t = 8)]
    pub lens_tokens: usize,
    /// Tokens pooled per probe text.
    #[arg(long, default_value_t = 128)]
    pub probe_tokens: usize,
    /// Model: a .gguf file, a Hugging Face directory, or `tiny` [default: the small model].
    #[arg(long, env = "SAFEEDIT_MODEL")]
    pub model: Option<PathBuf>,
    /// Output folder: analysis.json, analysis.csv, figures/*.svg.
    #[arg(long)]
    pub out: PathBuf,
    /// DINM settings of the editing methods.
    #[command(flatten)]
    pub dinm: DinmArgs,
    /// FT-L and ablation settings.
    #[command(flatten)]
    pub baselines: BaselineArgs,
    /// The runs database the analysis is stored in (the web app's Mechanisms page).
    #[command(flatten)]
    pub db: crate::publish::DbArgs,
}

/// A compared method, parsed.
enum Compared {
    Edit(Method),
    Model(String, PathBuf),
}

fn parse_methods(methods: &[String]) -> anyhow::Result<Vec<(String, Compared)>> {
    let mut out = Vec::new();
    for m in methods.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
        if m == "vanilla" {
            continue;
        }
        if let Some((name, path)) = m.split_once('=') {
            anyhow::ensure!(!name.is_empty(), "--methods: `{m}` needs a name before `=`");
            out.push((name.to_string(), Compared::Model(name.into(), path.into())));
            continue;
        }
        let method = <Method as clap::ValueEnum>::from_str(m, false)
            .map_err(|_| anyhow::anyhow!("--methods: unknown method `{m}`"))?;
        anyhow::ensure!(
            !matches!(method, Method::Sft | Method::Dpo),
            "--methods: `{m}` is a trained model; name its directory, e.g. `{m}=runs/{m}` \
             (from `safeedit train {m}`)"
        );
        anyhow::ensure!(
            method.edits(),
            "--methods: `{m}` does not change the model; analyse dinm, ftl, \
             dinm-random-layer, dinm-no-suffix or NAME=PATH"
        );
        out.push((m.to_string(), Compared::Edit(method)));
    }
    anyhow::ensure!(
        !out.is_empty(),
        "--methods: nothing to compare with vanilla"
    );
    Ok(out)
}

/// One model under analysis.
struct Analysed {
    label: String,
    edited_layer: Option<usize>,
    lm: Lm,
}

/// Runs the command.
pub fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    let compared = parse_methods(&args.methods)?;
    std::fs::create_dir_all(args.out.join("figures"))
        .with_context(|| format!("creating {}", args.out.display()))?;
    let model_path = paths::model_or_default(args.model.clone())?;
    let lm = backend::load(&model_path, true)?;
    let format = lm.prompt_format.clone();
    let mut settings = MethodSettings {
        dinm: args.dinm.config(&lm)?,
        ftl: args.baselines.ftl_config(&lm)?,
        seed: args.baselines.seed,
    };

    // The probe (§5.1).
    let examples = judge::training_examples()?;
    let probe_examples: Vec<ProbeExample> = examples
        .iter()
        .map(|e| ProbeExample {
            text: e.text.clone(),
            toxic: e.is_unsafe,
            held_out: is_held_out(&e.group),
        })
        .collect();
    let bar = runs::progress(probe_examples.len(), "probe", "texts");
    let mut pooled = Vec::with_capacity(probe_examples.len());
    for chunk in probe_examples.chunks(16) {
        let texts: Vec<String> = chunk.iter().map(|e| e.text.clone()).collect();
        pooled.extend(pooled_final_states(&lm, &texts, args.probe_tokens)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let probe = train_probe(&pooled, &probe_examples, 1.0, args.probe_tokens)?;
    eprintln!(
        "probe: held-out accuracy {:.1}% ({} texts)",
        probe.held_out.accuracy() * 100.0,
        probe.held_out.total()
    );

    // The models: one per edit for editing methods.
    let edit_records = edit_records(&args)?;
    let mut models: Vec<(String, Vec<Analysed>)> = Vec::new();
    for (name, c) in &compared {
        let analysed = match c {
            Compared::Edit(method) => {
                let bar = runs::progress(edit_records.len(), name, "edits");
                let mut out = Vec::new();
                for record in &edit_records {
                    let (edited, summary) = edit_for(*method, &lm, record, &mut settings, &format)?
                        .expect("editing methods edit");
                    out.push(Analysed {
                        label: format!("instance {}", record.id),
                        edited_layer: Some(summary.layer),
                        lm: edited,
                    });
                    bar.inc(1);
                }
                bar.finish_and_clear();
                out
            }
            Compared::Model(label, path) => {
                let other = backend::load(path, true)
                    .with_context(|| format!("--methods {label}={}", path.display()))?;
                anyhow::ensure!(
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
            anyhow::ensure!(
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
                    let record = edit_records.first().context("no edit instances")?;
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
    eprintln!("analysis layer {layer} ({layer_source})");

    // Inputs for the activation means: the shipped test prompts, as the model sees them.
    let fold = args.fold.fold();
    let mut inputs = fold.select(data::load("test-sample")?);
    if let Some(n) = args.inputs {
        inputs.truncate(n);
    }
    anyhow::ensure!(!inputs.is_empty(), "no activation inputs");
    let prompts = inputs
        .iter()
        .map(|r| lm.tokenizer.encode_prompt(&r.adversarial_prompt, &format))
        .collect::<Result<Vec<_>, _>>()?;
    let means = |m: &Lm, label: &str| -> anyhow::Result<ActivationMeans> {
        let bar = runs::progress(prompts.len(), label, "inputs");
        let out = mean_activations(&m.model, &prompts, layer, &m.device, &mut |_| bar.inc(1))?;
        bar.finish_and_clear();
        Ok(out)
    };
    let vanilla_means = means(&lm, "vanilla activations")?;

    let probe_w = &probe.probe.weights;
    let cosines = |m: &Lm, l: usize| -> Vec<f32> {
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
            let act = means(&m.lm, &format!("{name} {}", m.label))?;
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
        let mut lens_of = |label: &str, m: &Lm| -> anyhow::Result<()> {
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
            "version": env!("CARGO_PKG_VERSION"),
        },
        "report": report,
    });
    std::fs::write(
        args.out.join("analysis.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    std::fs::write(args.out.join("analysis.csv"), to_csv(&report))?;
    for (chart, svg) in figures::mechanism_charts(&report, Preset::Column)? {
        std::fs::write(args.out.join("figures").join(format!("{chart}.svg")), svg)?;
    }
    std::fs::write(
        args.out.join("analysis.tex"),
        mechanism::to_latex(&report, &args.out.display().to_string()),
    )?;
    print_summary(&report);
    eprintln!("wrote {}", args.out.display());
    match crate::publish::publish_analysis(&args.out, &args.db) {
        Ok(Some(slug)) => eprintln!("stored in the runs database: /mechanisms/{slug}"),
        Ok(None) => {}
        // The files are written; a database problem must not hide them.
        Err(e) => eprintln!("warning: not stored in the runs database: {e:#}"),
    }
    Ok(())
}

fn edit_records(args: &AnalyzeArgs) -> anyhow::Result<Vec<SafeEditRecord>> {
    let source = match args.edit_split.as_str() {
        "editing" => "editing-instances",
        "test" => "test-sample",
        path => path,
    };
    let mut records = data::load(source)?;
    if let Some(n) = args.edits {
        records.truncate(n);
    }
    anyhow::ensure!(!records.is_empty(), "no edit instances in {source}");
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

fn print_summary(report: &MechanismReport) {
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    println!(
        "\nmechanisms of {} at layer {} ({}); probe held-out accuracy {:.1}%",
        report.model,
        report.layer,
        report.layer_source,
        report.probe.held_out_accuracy * 100.0
    );
    println!(
        "{:<20}{:>6}{:>16}{:>16}{:>16}{:>16}",
        "method", "n", "tox red. all %", "tox red. top %", "shift mean %", "shift last %"
    );
    for m in &report.methods {
        println!(
            "{:<20}{:>6}{:>16}{:>16}{:>16}{:>16}",
            m.method,
            m.models.len(),
            pct(m.reduction_all),
            pct(m.reduction_top),
            pct(m.shift_token_mean),
            pct(m.shift_last_token)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::tests::TempDir;

    fn args(out: &std::path::Path, methods: &str) -> AnalyzeArgs {
        AnalyzeArgs {
            methods: methods.split(',').map(str::to_string).collect(),
            edit_split: "editing".into(),
            edits: Some(2),
            inputs: Some(3),
            fold: crate::train::FoldArg::All,
            projection_inputs: 3,
            region_layer: None,
            top_k: 16,
            lens_vectors: 2,
            lens_tokens: 3,
            probe_tokens: 32,
            model: Some("tiny".into()),
            out: out.to_path_buf(),
            dinm: DinmArgs {
                preset: None,
                lr: None,
                steps: Some(2),
                layer: None,
                padding: None,
                constraint_grad: false,
                reuse_first_layer: false,
            },
            baselines: BaselineArgs {
                ftl_steps: Some(2),
                ..BaselineArgs::default()
            },
            db: crate::publish::DbArgs {
                data_dir: Some(out.join("db")),
                database_url: None,
                no_db: false,
            },
        }
    }

    #[test]
    fn analysis_of_dinm_and_ftl_writes_report_csv_and_figures() {
        let dir = TempDir::new("analyze");
        run(args(dir.path(), "vanilla,dinm,ftl")).unwrap();
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
                // §5.4: nothing before or at the edited down_proj's input moves.
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
        let slug = std::fs::read_to_string(dir.path().join("slug.txt")).unwrap();
        let slug = slug.lines().next().unwrap().to_string();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let stored = rt.block_on(async {
            let store = safeedit_store::Store::open(None, &dir.path().join("db"))
                .await
                .unwrap();
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
        let dir = TempDir::new("analyze-sft");
        let sft = dir.path().join("sft");
        crate::train::run(crate::train::TrainArgs {
            objective: crate::train::ObjectiveArg::Sft,
            out: sft.clone(),
            resume: false,
            model: Some("tiny".into()),
            data: "test-sample".into(),
            fold: None,
            limit: Some(2),
            prompt_format: None,
            preset: None,
            lr: Some(1e-3),
            batch_size: Some(2),
            epochs: Some(1),
            warmup_steps: None,
            optimizer: None,
            beta: None,
            seed: None,
            lora_rank: None,
            lora_alpha: None,
            lora_targets: None,
            save_every: 10,
        })
        .unwrap();
        let out = dir.path().join("analysis");
        let mut a = args(&out, &format!("vanilla,sft={}", sft.display()));
        a.fold = crate::train::FoldArg::HeldOut;
        a.region_layer = Some(1);
        run(a).unwrap();
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
        let dir = TempDir::new("analyze-bad");
        for (methods, needle) in [
            ("vanilla", "nothing to compare"),
            ("prompt", "does not change the model"),
            ("dpo2", "unknown method `dpo2`"),
            ("=x", "needs a name"),
            ("sft", "is a trained model"),
        ] {
            let err = run(args(dir.path(), methods)).unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{methods}: {err:#}");
        }
        let err = run(args(dir.path(), "sft=/nonexistent/model")).unwrap_err();
        assert!(
            format!("{err:#}").contains("sft=/nonexistent/model"),
            "{err:#}"
        );
    }
}
