//! `safeedit locate`: DINM's toxic layer for one SafeEdit instance (docs/method.md §Location).

use std::time::Instant;

use clap::Args;
use safeedit_engine::dinm::locate_toxic_layer;
use serde_json::json;

use safeedit_pipeline::{Quiet, backend, data, paths};

use super::args::{DtypeArg, InstanceArgs, ModelArg, PaddingArg};
use super::print_instance;
use super::progress::Bars;

/// Padding of the two responses.
/// Arguments of `safeedit locate`.
#[derive(Args, Debug)]
pub struct LocateArgs {
    /// The instance.
    #[command(flatten)]
    pub instance: InstanceArgs,
    /// The model.
    #[command(flatten)]
    pub model: ModelArg,
    /// The weights' precision.
    #[command(flatten)]
    pub dtype: DtypeArg,
    /// Padding side for the two responses.
    #[arg(long, value_enum, default_value = "right")]
    pub padding: PaddingArg,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: LocateArgs) -> anyhow::Result<()> {
    let InstanceArgs {
        data: source,
        instance,
    } = &args.instance;
    let records = data::load(source)?;
    let record = data::instance(&records, *instance, source)?;
    let model_path = paths::model_or_default(args.model.model)?;
    let dtype = args.dtype.dtype;
    let lm = if args.json {
        backend::load_as(&model_path, dtype, &mut Quiet)?
    } else {
        backend::load_as(&model_path, dtype, &mut Bars::new())?
    };
    let padding = args.padding.into();
    let started = Instant::now();
    let found = locate_toxic_layer(
        &lm,
        &record.safe_generation,
        &record.unsafe_generation,
        padding,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let report = json!({
            "model": model_path.display().to_string(),
            "weights": dtype.as_str(),
            "instance": record.id,
            "data": source,
            "layer": found.layer,
            "edited_tensor": format!("model.layers.{}.mlp.down_proj.weight", found.layer),
            "distances": found.distances,
            "padding_side": found.padding_side,
            "response_tokens": {"safe": found.lengths[0], "unsafe": found.lengths[1]},
            "seconds": seconds,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print_instance(&record);
    println!(
        "responses: safe {} tokens, unsafe {} tokens, padding {:?}",
        found.lengths[0], found.lengths[1], found.padding_side
    );
    let max = found
        .distances
        .iter()
        .copied()
        .fold(0f32, f32::max)
        .max(f32::MIN_POSITIVE);
    for (layer, d) in found.distances.iter().enumerate() {
        let bar = "#".repeat((d / max * 40.0).round() as usize);
        let mark = if layer == found.layer {
            " <- toxic layer"
        } else {
            ""
        };
        println!("layer {layer:>3}  {d:>12.3}  {bar}{mark}");
    }
    if let Some((runner, ratio)) = found.runner_up() {
        println!(
            "runner-up: layer {runner} at {:.1}% of the winner",
            ratio * 100.0
        );
    }
    println!(
        "DINM edits model.layers.{}.mlp.down_proj.weight ({seconds:.2} s)",
        found.layer
    );
    Ok(())
}
