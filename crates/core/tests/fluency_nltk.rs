//! The fluency metric against NLTK (crates/core/tests/fixtures/fluency_nltk.json, written by
//! scripts/fixtures/make_fluency_reference.py) on real SafeEdit, AlpacaEval and model responses.

use safeedit_core::fluency::{fluency, split_sentences, word_tokenize};
use serde_json::Value;

#[test]
fn tokens_sentences_and_fluency_match_nltk() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/fluency_nltk.json")).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 100);
    let mut mismatches = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let text = case["text"].as_str().unwrap();
        let sentences: Vec<&str> = case["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let tokens: Vec<&str> = case["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        if split_sentences(text) != sentences {
            mismatches.push(format!(
                "case {i}: sentences {:?} vs {:?}",
                split_sentences(text),
                sentences
            ));
        }
        if word_tokenize(text) != tokens {
            mismatches.push(format!("case {i}: tokens differ"));
        }
        let want = case["fluency"].as_f64().unwrap();
        let got = fluency(text);
        if (got - want).abs() > 1e-9 {
            mismatches.push(format!("case {i}: fluency {got} vs {want}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
