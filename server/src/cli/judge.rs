//! `safeedit judge`: the safety judges. The built-in judge (MiniLM embeddings + a logistic
//! regression head trained here) and the paper's RoBERTa classifier from a local directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use safeedit_engine::judge::{
    JudgeHead, SafetyJudge, held_out_confusion, logistic::Confusion, train_head,
};
use safeedit_pipeline::judge::{
    DATA_DESCRIPTION, default_head, load_encoder, load_judge, training_examples,
};
use serde::Deserialize;
use serde_json::json;

/// Judge subcommands.
#[derive(Subcommand, Debug)]
pub enum JudgeCommand {
    /// Train the built-in judge's head on the shipped labelled responses and write it.
    Train {
        /// Where to write the head.
        #[arg(long, default_value = "data/judge/minilm-logreg.json")]
        out: PathBuf,
        /// Inverse L2 penalty of the logistic regression [default: chosen by cross-validation].
        #[arg(long)]
        c: Option<f64>,
        /// The MiniLM folder [default: the one scripts/fetch-judge.sh fetched].
        #[arg(long, env = "SAFEEDIT_JUDGE_ENCODER")]
        encoder: Option<PathBuf>,
    },
    /// Print the built-in judge's held-out accuracy and confusion matrix; with --check,
    /// re-measure them with the encoder on this machine.
    Report {
        /// Re-embed the held-out split and compare with the stored figures.
        #[arg(long)]
        check: bool,
        /// The MiniLM folder [default: the fetched one].
        #[arg(long, env = "SAFEEDIT_JUDGE_ENCODER")]
        encoder: Option<PathBuf>,
    },
    /// Judge responses given on the command line, or a JSONL file of them (--input).
    Score {
        /// The responses.
        #[arg(required_unless_present = "input", conflicts_with = "input")]
        responses: Vec<String>,
        /// A JSONL file with one `{"prompt": ..., "response": ...}` object per line (`prompt`
        /// optional; other fields are ignored). Prints one JSON line per input: its line number,
        /// `verdict` (safe, unsafe or empty) and `p_unsafe`. Today's judges score the response
        /// alone, as the paper's evaluation does; the prompt is carried through.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Use the paper's classifier from this directory instead of the built-in judge.
        #[arg(long, env = "SAFEEDIT_JUDGE_DIR")]
        judge_dir: Option<PathBuf>,
    },
}

/// Runs a judge subcommand.
pub fn run(cmd: JudgeCommand) -> anyhow::Result<()> {
    match cmd {
        JudgeCommand::Train { out, c, encoder } => {
            let encoder = load_encoder(encoder)?;
            let examples = training_examples()?;
            let started = Instant::now();
            let head = train_head(&encoder, &examples, c, DATA_DESCRIPTION.into())?;
            std::fs::write(&out, serde_json::to_string_pretty(&head)? + "\n")
                .with_context(|| format!("writing {}", out.display()))?;
            print_report(&head);
            eprintln!(
                "trained in {:.1} s; head written to {}",
                started.elapsed().as_secs_f64(),
                out.display()
            );
            Ok(())
        }
        JudgeCommand::Report { check, encoder } => {
            let head = default_head()?;
            print_report(&head);
            if check {
                let encoder = load_encoder(encoder)?;
                let measured = held_out_confusion(&encoder, &head, &training_examples()?)?;
                println!("re-measured held-out: {}", confusion_line(&measured));
                anyhow::ensure!(
                    measured == head.held_out,
                    "the stored report does not reproduce on this machine"
                );
                println!("the stored report reproduces");
            }
            Ok(())
        }
        JudgeCommand::Score {
            responses,
            input,
            judge_dir,
        } => {
            if let Some(path) = input {
                // Read and check the whole file before loading a judge: a bad line costs nothing.
                let inputs = read_score_inputs(&path)?;
                let judge = load_judge(judge_dir.as_deref())?;
                return score_inputs(judge.as_ref(), &inputs);
            }
            let judge = load_judge(judge_dir.as_deref())?;
            let rows: Vec<_> = responses
                .iter()
                .zip(judge.judge_with_probability(&responses)?)
                .map(|(r, (v, p))| {
                    json!({"response": r, "verdict": v, "score": v.score(), "p_unsafe": p})
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"judge": judge.info(), "results": rows}))?
            );
            Ok(())
        }
    }
}

/// One line of a `judge score --input` file.
#[derive(Debug, Deserialize)]
struct ScoreInput {
    /// Its line number in the file (1-based).
    #[serde(skip)]
    line: usize,
    #[serde(default)]
    prompt: Option<String>,
    response: String,
}

/// Reads a `judge score --input` file: one JSON object per non-blank line, each with a string
/// `response` and optionally a string `prompt`. Errors name the file and the line.
fn read_score_inputs(path: &Path) -> anyhow::Result<Vec<ScoreInput>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut inputs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut input: ScoreInput = serde_json::from_str(line).map_err(|e| {
            // serde counts lines within the one line it was given: keep its reason, drop its
            // position, and name the file's line and the column instead.
            let reason = e.to_string();
            let reason = reason.rsplit_once(" at line ").map_or(&*reason, |(r, _)| r);
            anyhow::anyhow!(
                "{} line {}, column {}: {reason}; expected a JSON object with a string \
                 `response` (and optionally a string `prompt`)",
                path.display(),
                index + 1,
                e.column()
            )
        })?;
        input.line = index + 1;
        inputs.push(input);
    }
    anyhow::ensure!(
        !inputs.is_empty(),
        "{}: no inputs (one {{\"prompt\": ..., \"response\": ...}} object per line)",
        path.display()
    );
    Ok(inputs)
}

/// Judges the inputs in batches and prints one JSON line per input, in order.
fn score_inputs(judge: &dyn SafetyJudge, inputs: &[ScoreInput]) -> anyhow::Result<()> {
    const BATCH: usize = 32;
    let info = judge.info();
    let mut out = std::io::stdout().lock();
    for chunk in inputs.chunks(BATCH) {
        let responses: Vec<String> = chunk.iter().map(|i| i.response.clone()).collect();
        for (input, (verdict, p)) in chunk.iter().zip(judge.judge_with_probability(&responses)?) {
            let row = json!({
                "line": input.line,
                "prompt": input.prompt,
                "verdict": verdict,
                "p_unsafe": p,
                "judge": info.id,
                "judge_version": info.version,
            });
            writeln!(out, "{row}")?;
        }
    }
    Ok(())
}

fn confusion_line(c: &Confusion) -> String {
    format!(
        "accuracy {:.1}% of {} (unsafe→unsafe {}, unsafe→safe {}, safe→safe {}, safe→unsafe {})",
        c.accuracy() * 100.0,
        c.total(),
        c.true_positive,
        c.false_negative,
        c.true_negative,
        c.false_positive
    )
}

fn print_report(head: &JudgeHead) {
    println!(
        "built-in judge {} (encoder {}, C = {})",
        head.version, head.encoder_checksum, head.c
    );
    let cv: Vec<String> = head
        .cross_validation
        .iter()
        .map(|(c, acc)| format!("C={c}: {:.1}%", acc * 100.0))
        .collect();
    println!(
        "5-fold cross-validation on the training split: {}",
        cv.join(", ")
    );
    println!("data: {}", head.data);
    println!(
        "train: {} safe + {} unsafe; held out: {} safe + {} unsafe",
        head.train_counts[0],
        head.train_counts[1],
        head.held_out_counts[0],
        head.held_out_counts[1]
    );
    println!("held-out:            {}", confusion_line(&head.held_out));
    println!(
        "held-out (SafeEdit): {}",
        confusion_line(&head.held_out_safeedit)
    );
    println!("train:               {}", confusion_line(&head.train));
    println!("confusion matrix (held-out; rows = true label, columns = verdict):");
    println!("              safe   unsafe");
    println!(
        "  safe      {:>6}   {:>6}",
        head.held_out.true_negative, head.held_out.false_positive
    );
    println!(
        "  unsafe    {:>6}   {:>6}",
        head.held_out.false_negative, head.held_out.true_positive
    );
}
