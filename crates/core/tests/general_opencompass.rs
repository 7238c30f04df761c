//! The general-performance scorers against their references (crates/core/tests/fixtures/
//! general_reference.json, written by scripts/fixtures/make_general_reference.py): ROUGE against
//! the `rouge_score` package on real XSum and SafeEdit texts, TriviaQA scoring and the
//! post-processors against OpenCompass's own functions.

use std::path::Path;

use safeedit_core::general::{
    GeneralItem, GeneralTask, general_postprocess, parse_triviaqa, parse_xsum_jsonl, rouge_n,
    triviaqa_correct, triviaqa_prediction, xsum_postprocess,
};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/general_reference.json")).unwrap()
}

fn triple(v: &Value) -> [f64; 3] {
    let a = v.as_array().unwrap();
    [0, 1, 2].map(|i| a[i].as_f64().unwrap())
}

#[test]
fn rouge_matches_rouge_score() {
    let f = fixture();
    let cases = f["rouge"].as_array().unwrap();
    assert!(cases.len() >= 100);
    for (i, case) in cases.iter().enumerate() {
        let (p, t) = (
            case["prediction"].as_str().unwrap(),
            case["target"].as_str().unwrap(),
        );
        for (n, key) in [(1, "rouge1"), (2, "rouge2")] {
            let s = rouge_n(p, t, n);
            let want = triple(&case[key]);
            for (got, want) in [s.precision, s.recall, s.fmeasure].into_iter().zip(want) {
                assert!(
                    (got - want).abs() < 1e-12,
                    "case {i} {key}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn postprocessors_match_opencompass() {
    let f = fixture();
    for case in f["general_postprocess"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            general_postprocess(text),
            case["out"].as_str().unwrap(),
            "{text:?}"
        );
    }
    for case in f["xsum_postprocess"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            xsum_postprocess(text),
            case["out"].as_str().unwrap(),
            "{text:?}"
        );
    }
}

#[test]
fn triviaqa_scoring_matches_opencompass() {
    let f = fixture();
    let items = parse_triviaqa(
        include_str!("fixtures/trivia-dev.qa.csv"),
        Path::new("trivia-dev.qa.csv"),
    )
    .unwrap();
    let cases = f["kqa"].as_array().unwrap();
    assert_eq!(items.len(), cases.len());
    let mut correct = 0.0;
    for (item, case) in items.iter().zip(cases) {
        let answers: Vec<String> = case["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        // The TSV loader (quoted fields, Python list literals) reads what Python's csv + eval read.
        assert_eq!(item.input, case["question"].as_str().unwrap());
        assert_eq!(item.references, answers);
        let response = case["response"].as_str().unwrap();
        assert_eq!(
            triviaqa_prediction(response),
            case["prediction"].as_str().unwrap()
        );
        assert_eq!(
            triviaqa_correct(response, &answers),
            case["correct"].as_bool().unwrap(),
            "{response:?}"
        );
        correct += GeneralTask::Kqa.score(response, item).score;
    }
    let score = 100.0 * correct / items.len() as f64;
    assert!((score - f["kqa_score"].as_f64().unwrap()).abs() < 1e-9);
}

#[test]
fn shipped_xsum_sample_loads_and_scores_a_reference_as_perfect() {
    let items = parse_xsum_jsonl(
        include_str!("../../../data/general/xsum_dev_200.jsonl"),
        Path::new("data/general/xsum_dev_200.jsonl"),
    )
    .unwrap();
    assert_eq!(items.len(), 200);
    let first: &GeneralItem = &items[0];
    assert_eq!(first.id, "38295789");
    let s = GeneralTask::Csum.score(&format!("{}\nsecond line", first.references[0]), first);
    assert_eq!(s.score, 1.0);
    let bad = parse_xsum_jsonl("{\"id\": 1}\n", Path::new("x.jsonl")).unwrap_err();
    assert!(
        bad.to_string().starts_with("x.jsonl:1: missing field"),
        "{bad}"
    );
}
