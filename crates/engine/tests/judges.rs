//! Judges against PyTorch: the MiniLM encoder of the built-in judge on the real weights, and a
//! random-init RoBERTa sequence classifier (tests/fixtures/tiny-roberta, written by
//! scripts/fixtures/make_judge_reference.py) for the paper's classifier architecture.

mod common;

use std::path::Path;

use common::{TestBackend, max_rel_diff, minilm_dir};
use safeedit_core::Verdict;
use safeedit_engine::judge::{MiniLmEncoder, RobertaJudge, SafetyJudge};
use serde_json::Value;

fn fixture(path: &str) -> Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    serde_json::from_str(&std::fs::read_to_string(full).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn minilm_embeddings_match_sentence_transformers_pipeline() {
    let encoder = MiniLmEncoder::<TestBackend>::load(&minilm_dir(), &Default::default()).unwrap();
    let golden = fixture("minilm_golden.json");
    let cases = golden["cases"].as_array().unwrap();
    let texts: Vec<String> = cases
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect();
    let embeddings = encoder.embed(&texts).unwrap();
    for (case, got) in cases.iter().zip(&embeddings) {
        let want = floats(&case["embedding"]);
        let diff = max_rel_diff(got, &want);
        assert!(
            diff < 1e-3,
            "{:?}: embedding differs by {diff:.2e}",
            case["text"]
        );
        let norm: f32 = got.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    // The long text is truncated to 256 tokens like the reference.
    assert_eq!(cases.last().unwrap()["ids"].as_array().unwrap().len(), 256);
}

#[test]
fn roberta_classifier_matches_transformers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-roberta");
    let judge = RobertaJudge::<TestBackend>::load(&dir, &Default::default()).unwrap();
    let expected = fixture("tiny-roberta/expected.json");
    let cases = expected["cases"].as_array().unwrap();
    let texts: Vec<String> = cases
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect();
    // One at a time (no padding) and as one padded batch of the first three.
    for (case, text) in cases.iter().zip(&texts) {
        let got = &judge.probabilities(std::slice::from_ref(text)).unwrap()[0];
        let diff = max_rel_diff(got, &floats(&case["probs"]));
        assert!(diff < 1e-4, "{text:?}: probabilities differ by {diff:.2e}");
    }
    let batch = judge.probabilities(&texts[..3]).unwrap();
    for (got, want) in batch
        .iter()
        .zip(expected["batch_probs"].as_array().unwrap())
    {
        assert!(
            max_rel_diff(got, &floats(want)) < 1e-4,
            "padded batch: {got:?} vs {want}"
        );
    }
    // Verdicts: argmax, and 0.5 for the empty response.
    let mut responses = texts.clone();
    responses.push(String::new());
    let verdicts = judge.judge(&responses).unwrap();
    for (case, verdict) in cases.iter().zip(&verdicts) {
        let p = floats(&case["probs"]);
        let want = if p[1] >= 0.5 {
            Verdict::Unsafe
        } else {
            Verdict::Safe
        };
        assert_eq!(*verdict, want);
    }
    assert_eq!(verdicts.last(), Some(&Verdict::Empty));
    assert_eq!(judge.info().id, "safeedit-roberta");
}

#[test]
fn judge_directory_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = RobertaJudge::<TestBackend>::load(dir.path(), &Default::default()).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-roberta/config.json");
    std::fs::copy(src, dir.path().join("config.json")).unwrap();
    let err = RobertaJudge::<TestBackend>::load(dir.path(), &Default::default()).unwrap_err();
    assert!(
        err.to_string().contains("model.safetensors") && err.to_string().contains("not found"),
        "{err}"
    );
}
