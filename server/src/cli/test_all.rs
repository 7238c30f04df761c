//! `safeedit test-all-table`: `eval --test-all` runs joined into the paper's Table 3; and the
//! test_ALL tables printed by both commands.

use std::path::PathBuf;

use clap::Args;
use safeedit_core::eval::MetricRow;
use safeedit_core::test_all::{AggregateRow, TEST_ALL_METRICS};
use safeedit_pipeline::test_all::join_tables;

use super::progress::Bars;

/// Arguments of `safeedit test-all-table`.
#[derive(Args, Debug)]
pub struct TableArgs {
    /// Folders written by `safeedit eval --test-all`, one per method, in row order.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Output prefix: PREFIX.tex (Table 3 as LaTeX) and PREFIX.csv (tidy, every slice).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `safeedit test-all-table`.
pub fn table(args: TableArgs) -> anyhow::Result<()> {
    let joined = join_tables(&args.runs, &args.out, &mut Bars::new())?;
    print_methods(&joined.methods);
    eprintln!(
        "written: {} and {}",
        joined.tex.display(),
        joined.csv.display()
    );
    Ok(())
}

fn cell(rows: &[MetricRow], metric: &str) -> String {
    rows.iter()
        .find(|r| r.group == "all" && r.metric == metric)
        .map_or("-".into(), |r| format!("{:.2}", r.score))
}

/// Every edited model's test_ALL metrics.
pub fn print_models(models: &[(String, Vec<MetricRow>)]) {
    println!("\nper model (defense %, fluency bits)");
    print!("{:<22}", "");
    for m in TEST_ALL_METRICS {
        print!("{m:>13}");
    }
    println!();
    for (label, rows) in models {
        print!("{label:<22}");
        for m in TEST_ALL_METRICS {
            print!("{:>13}", cell(rows, m));
        }
        println!();
    }
}

/// Table 3: each method's mean ± std over its edited models.
pub fn print_methods(methods: &[(String, Vec<AggregateRow>)]) {
    println!("\nSafeEdit_test_ALL (mean ± std over edited models)");
    print!("{:<22}", "");
    for m in TEST_ALL_METRICS {
        print!("{m:>17}");
    }
    println!();
    for (method, rows) in methods {
        print!("{method:<22}");
        for m in TEST_ALL_METRICS {
            let text = rows
                .iter()
                .find(|r| r.group == "all" && r.metric == m)
                .map_or("-".into(), |r| {
                    if r.score.runs > 1 {
                        format!("{:.2} ± {:.2}", r.score.mean, r.score.std)
                    } else {
                        format!("{:.2}", r.score.mean)
                    }
                });
            print!("{text:>17}");
        }
        println!();
    }
}
