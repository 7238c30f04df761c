//! DINM against the PyTorch reference (scripts/fixtures/make_dinm_reference.py) on the real
//! default model and the paper's three editing instances.

mod common;

use std::path::Path;

use common::{TestBackend, default_gguf};
use safeedit_core::safeedit::load_records;
use safeedit_engine::dinm::locate_toxic_layer;
use safeedit_engine::{LanguageModel, PaddingSide};
use serde_json::Value;

const TOL: f32 = 1e-3;

fn reference() -> Value {
    serde_json::from_str(include_str!("fixtures/smollm2_dinm_reference.json")).unwrap()
}

/// The reference's per-layer distances of `case`, after checking `got` against them within
/// [`TOL`] (relative).
fn distances_close(id: u64, got: &[f32], case: &Value) -> Vec<f32> {
    let want: Vec<f32> = case["distances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got.len(), want.len());
    for (layer, (got, want)) in got.iter().zip(&want).enumerate() {
        let rel = (got - want).abs() / want.abs().max(1e-6);
        assert!(
            rel < TOL,
            "instance {id} layer {layer}: {got} vs {want} ({rel:.2e})"
        );
    }
    want
}

#[test]
fn toxic_layer_location_matches_reference() {
    let lm = LanguageModel::<TestBackend>::load(&default_gguf(), &Default::default()).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/safeedit/three_instances_for_editing.json");
    let records = load_records(&data).unwrap();
    for case in reference()["locate"].as_array().unwrap() {
        let id = case["instance"].as_u64().unwrap();
        let record = records.iter().find(|r| r.id == id).unwrap();
        assert_eq!(case["padding_side"], "right");

        // Same tokens as the reference tokenizer (before padding).
        let mask = case["attention_mask"].as_array().unwrap();
        for (row, text) in [&record.safe_generation, &record.unsafe_generation]
            .into_iter()
            .enumerate()
        {
            let want: Vec<u32> = case["ids"][row]
                .as_array()
                .unwrap()
                .iter()
                .zip(mask[row].as_array().unwrap())
                .filter(|(_, m)| m.as_u64() == Some(1))
                .map(|(t, _)| t.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(
                lm.tokenizer.encode(text, true).unwrap(),
                want,
                "instance {id} row {row}"
            );
        }

        let found = locate_toxic_layer(
            &lm,
            &record.safe_generation,
            &record.unsafe_generation,
            PaddingSide::Right,
        )
        .unwrap();
        let want = distances_close(id, &found.distances, case);
        let want_layer = case["layer"].as_u64().unwrap() as usize;
        if found.layer != want_layer {
            // On SmolLM2 several middle layers carry massive activations and their distances are
            // near-ties: a different winner is accepted only when the two are within tolerance.
            let (a, b) = (want[found.layer], want[want_layer]);
            assert!(
                (a - b).abs() / b < TOL,
                "instance {id}: located layer {} but the reference picked {want_layer} ({a} vs {b})",
                found.layer
            );
            eprintln!(
                "instance {id}: near-tie, layer {} accepted for reference {want_layer}",
                found.layer
            );
        }
    }
}

/// Left padding (EasyEdit's Mistral setting) against transformers with its default SDPA
/// attention: the leading pad positions, which see no real key, enter the distance too.
#[test]
fn toxic_layer_location_with_left_padding_matches_transformers() {
    let lm = LanguageModel::<TestBackend>::load(&default_gguf(), &Default::default()).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/safeedit/three_instances_for_editing.json");
    let records = load_records(&data).unwrap();
    let reference = reference();
    let left = &reference["locate_left"];
    assert_eq!(left["attn_implementation"], "sdpa");
    let cases = left["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    let padded = cases
        .iter()
        .filter(|case| {
            case["attention_mask"]
                .as_array()
                .unwrap()
                .iter()
                .any(|row| row[0].as_u64() == Some(0))
        })
        .count();
    assert!(
        padded >= 2,
        "the responses of most instances differ in length"
    );
    for case in cases {
        let id = case["instance"].as_u64().unwrap();
        let record = records.iter().find(|r| r.id == id).unwrap();
        assert_eq!(case["padding_side"], "left");
        let found = locate_toxic_layer(
            &lm,
            &record.safe_generation,
            &record.unsafe_generation,
            PaddingSide::Left,
        )
        .unwrap();
        let want = distances_close(id, &found.distances, case);
        assert_eq!(
            found.layer,
            case["layer"].as_u64().unwrap() as usize,
            "instance {id}: {:?} vs {want:?}",
            found.distances
        );
    }
}

#[test]
fn dinm_edit_matches_reference() {
    use safeedit_engine::PromptFormat;
    use safeedit_engine::dinm::{DinmConfig, dinm_edit};
    type Ad = burn::backend::Autodiff<TestBackend>;

    let lm = LanguageModel::<TestBackend>::load(&default_gguf(), &Default::default()).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/safeedit/three_instances_for_editing.json");
    let records = load_records(&data).unwrap();
    let reference = reference();
    assert_eq!(reference["preset"]["format"], "chat");
    let config = DinmConfig::smollm2_135m();
    assert_eq!(reference["preset"]["lr"].as_f64().unwrap(), config.lr);
    for case in reference["edits"].as_array().unwrap() {
        let id = case["instance"].as_u64().unwrap();
        let record = records.iter().find(|r| r.id == id).unwrap();
        let ids = |v: &Value| -> Vec<u32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        };
        // Fix the layer to the reference's so that a near-tie in location cannot change the test.
        let layer = case["layer"].as_u64().unwrap() as usize;
        let config = config.clone().with_layer(Some(layer));
        let edit =
            dinm_edit::<Ad>(&lm, record, &config, &PromptFormat::chat(), &mut |_| {}).unwrap();

        assert_eq!(
            edit.tokens.edit_input,
            ids(&case["edit_ids"]),
            "instance {id}: edit input"
        );
        assert_eq!(
            edit.tokens.labels,
            ids(&case["labels"]),
            "instance {id}: labels"
        );
        assert_eq!(
            edit.tokens.constraint_input,
            ids(&case["constraint_ids"]),
            "instance {id}"
        );
        assert_eq!(
            edit.tokens.constraint_positions as u64,
            case["constraint_positions"].as_u64().unwrap()
        );

        let steps = case["steps"].as_array().unwrap();
        assert_eq!(
            edit.steps.len(),
            steps.len(),
            "instance {id}: number of steps"
        );
        for (got, want) in edit.steps.iter().zip(steps) {
            let want_loss = want["loss"].as_f64().unwrap();
            let rel = (got.loss - want_loss).abs() / want_loss.abs();
            assert!(
                rel < 1e-3,
                "instance {id} step {}: loss {} vs {want_loss} ({rel:.2e})",
                got.step,
                got.loss
            );
            let want_edit = want["edit"].as_f64().unwrap();
            assert!(
                (got.edit - want_edit).abs() / want_edit < 1e-3,
                "instance {id} step {}: edit loss",
                got.step
            );
        }
        let want_norm = case["delta_norm"].as_f64().unwrap();
        let rel = (edit.delta.norm - want_norm).abs() / want_norm;
        assert!(
            rel < 1e-3,
            "instance {id}: delta norm {} vs {want_norm} ({rel:.2e})",
            edit.delta.norm
        );
        eprintln!(
            "instance {id}: layer {layer}, final loss {:.5} (reference {:.5}), |delta| {:.4} (reference {want_norm:.4})",
            edit.steps.last().unwrap().loss,
            steps.last().unwrap()["loss"].as_f64().unwrap(),
            edit.delta.norm
        );

        let edited = edit.delta.apply(&lm);
        let prompt = ids(&case["post_prompt_ids"]);
        let want = ids(&case["post_greedy_ids"]);
        let (out, _) = edited
            .generate(
                &[prompt],
                &safeedit_engine::GenerationConfig::greedy(want.len()),
            )
            .unwrap();
        assert_eq!(
            out[0].generated_ids, want,
            "instance {id}: post-edit greedy tokens"
        );
    }
}
