//! The command line: one file per subcommand, each turning its flags into a pipeline plan
//! (`args.rs` holds the flag groups they share), running it with progress bars
//! ([`progress::Bars`]) and printing the result.

pub mod analyze;
pub mod args;
pub mod bench;
pub mod edit;
pub mod eval;
pub mod figure;
pub mod general;
pub mod generate;
pub mod judge;
pub mod locate;
pub mod progress;
pub mod test_all;
pub mod train;

use clap::{Parser, Subcommand};
use safeedit_core::SafeEditRecord;
use safeedit_pipeline::{backend, paths};

use crate::web;

/// SafeEdit Studio: detoxify LLMs via knowledge editing (DINM) and evaluate on SafeEdit.
#[derive(Parser, Debug)]
#[command(name = "safeedit", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the web app.
    Serve(web::ServeArgs),
    /// Run jobs queued by a server (`serve --workers 0`) on this machine's model, one at a
    /// time: several workers, on several machines, share one Postgres database.
    Worker(web::WorkerArgs),
    /// Generate a continuation of a prompt.
    Generate(generate::GenerateArgs),
    /// Locate DINM's toxic layer for one SafeEdit instance.
    Locate(locate::LocateArgs),
    /// Run DINM on one SafeEdit instance and compare the vanilla and edited generations.
    Edit(edit::EditArgs),
    /// Evaluate a method on SafeEdit instances (DS/DG, fluency), or with --test-all on the
    /// SafeEdit_test_ALL inputs (DG_onlyQ, DG_otherAQ; editing methods mean ± std over edits).
    Eval(eval::EvalArgs),
    /// Join the shards of an `eval --shard` run into one run (checked: same settings and model,
    /// every instance once), in dataset order, and store it.
    EvalMerge(eval::MergeArgs),
    /// Join `eval --test-all` runs into the paper's Table 3 (LaTeX and CSV).
    TestAllTable(test_all::TableArgs),
    /// General performance of a method's model: KQA (TriviaQA), CSum (XSum) or the knowledge proxy.
    General(general::GeneralArgs),
    /// Fine-tune every parameter with SFT or DPO on SafeEdit pairs (resumable; writes a model
    /// directory).
    Train(train::TrainArgs),
    /// Mechanism analysis: toxicity probe, toxic-region toxicity, activation shift, logit lens.
    Analyze(analyze::AnalyzeArgs),
    /// Draw a run's chart for a paper (SVG, vector PDF, 300 dpi PNG; ACL column or full width).
    Figure(figure::FigureArgs),
    /// Describe a model: config, parameter count, tokenizer, prompt format.
    Info {
        /// The model.
        #[command(flatten)]
        model: args::ModelArg,
        /// The weights' precision to load in (reported as `weights`).
        #[command(flatten)]
        dtype: args::DtypeArg,
    },
    /// Write a model (GGUF, dequantised) as a Hugging Face folder: config.json, model.safetensors
    /// (f32), tokenizer.json and tokenizer_config.json with its chat template.
    Convert {
        /// The model.
        #[command(flatten)]
        model: args::ModelArg,
        /// The folder to write (created; files in it are replaced).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Safety judges: train and report the built-in one, score responses.
    #[command(subcommand)]
    Judge(judge::JudgeCommand),
    /// Benchmarks (results go to BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

impl Cli {
    /// Runs the chosen subcommand.
    ///
    /// An experiment runs on a thread of rayon's pool ([`safeedit_engine::threads`]): every
    /// tensor operation that splits its work then starts on the spot instead of being handed
    /// over to the pool while the calling thread sleeps (decoding on one thread: +40-50 %). The
    /// server and the queue worker stay off the global pool: their job thread and the
    /// try-the-model requests run side by side, each on a pool of its own
    /// ([`safeedit_engine::threads::OwnPool`]), so neither can take up the other's work.
    pub fn run(self) -> anyhow::Result<()> {
        let command = self.command;
        if matches!(command, Command::Serve(_) | Command::Worker(_)) {
            command.run()
        } else {
            safeedit_engine::threads::on_pool(move || command.run())
        }
    }
}

impl Command {
    /// Runs the subcommand on the calling thread.
    fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Serve(args) => web::serve(args),
            Command::Worker(args) => web::worker(args),
            Command::Generate(args) => generate::run(args),
            Command::Locate(args) => locate::run(args),
            Command::Edit(args) => edit::run(args),
            Command::Eval(args) => eval::run(args),
            Command::EvalMerge(args) => eval::merge(args),
            Command::TestAllTable(args) => test_all::table(args),
            Command::General(args) => general::run(args),
            Command::Figure(args) => figure::run(args),
            Command::Analyze(args) => analyze::run(args),
            Command::Train(args) => train::run(args),
            Command::Info { model, dtype } => {
                let path = paths::model_or_default(model.model)?;
                let lm = backend::load_as(&path, dtype.dtype, &mut progress::Bars::new())?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&lm.summary(backend::NAME))?
                );
                Ok(())
            }
            Command::Convert { model, out } => {
                let path = paths::model_or_default(model.model)?;
                let lm = backend::load(&path, &mut progress::Bars::new())?;
                lm.save_dir(&out, None)?;
                eprintln!(
                    "wrote {} as a Hugging Face folder: {}",
                    lm.name,
                    out.display()
                );
                Ok(())
            }
            Command::Judge(cmd) => judge::run(cmd),
            Command::Bench(cmd) => bench::run(cmd),
        }
    }
}

/// The instance line `edit` and `locate` start with.
pub fn print_instance(record: &SafeEditRecord) {
    println!(
        "instance {} ({}, attack {}): {}",
        record.id, record.category, record.attack_name, record.question
    );
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        // Unique argument names, valid defaults: clap checks them all here, not at run time.
        super::Cli::command().debug_assert();
    }
}
