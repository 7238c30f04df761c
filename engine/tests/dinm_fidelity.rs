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

#[test]
fn toxic_layer_location_matches_reference() {
    let lm = LanguageModel::<TestBackend>::load(&default_gguf(), &Default::default()).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/safeedit/three_instances_for_editing.json");
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
        let want: Vec<f32> = case["distances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(found.distances.len(), want.len());
        for (layer, (got, want)) in found.distances.iter().zip(&want).enumerate() {
            let rel = (got - want).abs() / want.abs().max(1e-6);
            assert!(
                rel < TOL,
                "instance {id} layer {layer}: {got} vs {want} ({rel:.2e})"
            );
        }
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
