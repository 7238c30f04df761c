//! Parity with PyTorch + transformers on the real default model (SmolLM2-135M-Instruct, the
//! GGUF the setup script fetches). Golden values: tests/fixtures/smollm2_golden.json, written by
//! scripts/make-fixtures.sh. Tolerance: max |ours - torch| / max |torch| < 1e-3.

mod common;

use std::sync::OnceLock;

use base64::Engine as _;
use burn::module::Param;
use burn::tensor::DType;
use common::{TestBackend, default_gguf, max_rel_diff, values};
use safeedit_engine::{
    Batch, ForwardOptions, GenerationConfig, LanguageModel, Logits, PrefixCache, PromptFormat,
    WeightDtype, WeightId,
};
use serde_json::Value;

const TOL: f32 = 1e-3;
/// bf16 weights against transformers' f32 logits: bf16 keeps 8 bits of mantissa, so each weight
/// moves by up to 0.4 %; measured max |ours - torch| / max |torch| over the fixture's prompts:
/// 4.1e-3 to 6.6e-3.
const BF16_TOL: f32 = 2e-2;

fn golden() -> &'static Value {
    static GOLDEN: OnceLock<Value> = OnceLock::new();
    GOLDEN.get_or_init(|| {
        let text = include_str!("fixtures/smollm2_golden.json");
        serde_json::from_str(text).expect("fixture parses")
    })
}

fn model() -> LanguageModel<TestBackend> {
    let path = default_gguf();
    LanguageModel::load(&path, &Default::default()).expect("default model loads")
}

fn floats(v: &Value) -> Vec<f32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn prompt(name: &str) -> &'static Value {
    golden()["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
}

#[test]
fn fixture_was_made_from_this_model_file() {
    use sha2::Digest;
    let bytes = std::fs::read(default_gguf()).unwrap();
    let digest = format!("{:x}", sha2::Sha256::digest(&bytes));
    assert_eq!(digest, golden()["source"]["gguf_sha256"].as_str().unwrap());
}

#[test]
fn tokenizer_matches_transformers() {
    let lm = model();
    for case in golden()["tokenizer_cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            lm.tokenizer.encode(text, false).unwrap(),
            ids(&case["ids"]),
            "{text:?}"
        );
    }
    for p in golden()["prompts"].as_array().unwrap() {
        let text = p["text"].as_str().unwrap();
        let format = match p["format"].as_str().unwrap() {
            "chat" => PromptFormat::chat(),
            _ => PromptFormat::Plain,
        };
        assert_eq!(
            lm.tokenizer.render_prompt(text, &format).unwrap(),
            p["rendered"].as_str().unwrap()
        );
        assert_eq!(
            lm.tokenizer.encode_prompt(text, &format).unwrap(),
            ids(&p["ids"]),
            "{}",
            p["name"]
        );
    }
}

#[test]
fn logits_match_transformers() {
    let lm = model();
    let device = Default::default();
    for p in golden()["prompts"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let tokens = ids(&p["ids"]);
        let logits = lm.model.logits(&Batch::single(&tokens, &device));
        let [_, seq, vocab] = logits.dims();
        assert_eq!(seq, tokens.len());
        let all = values(logits);

        let last = &all[(seq - 1) * vocab..];
        let want = floats(&p["last_logits_b64"]);
        let diff = max_rel_diff(last, &want);
        eprintln!("{name} ({seq} tokens): last-position logits max rel diff {diff:.2e}");
        assert!(
            diff < TOL,
            "{name}: last-position logits differ by {diff:.2e}"
        );

        let slice_ids: Vec<usize> = ids(&p["slice_ids"])
            .into_iter()
            .map(|i| i as usize)
            .collect();
        for (pos, row) in p["slice_positions"]
            .as_array()
            .unwrap()
            .iter()
            .zip(p["slice_logits"].as_array().unwrap())
        {
            let pos = pos.as_u64().unwrap() as usize;
            let want: Vec<f32> = row
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let got: Vec<f32> = slice_ids.iter().map(|&i| all[pos * vocab + i]).collect();
            let diff = max_rel_diff(&got, &want);
            assert!(
                diff < TOL,
                "{name} position {pos}: logits differ by {diff:.2e}"
            );
        }

        // Same argmax wherever the reference's top two are not a near-tie.
        let argmax = ids(&p["argmax_per_position"]);
        for (pos, &want) in argmax.iter().enumerate() {
            let row = &all[pos * vocab..(pos + 1) * vocab];
            let got = safeedit_engine::generate::argmax(row);
            if got != want {
                let gap = (row[got as usize] - row[want as usize]).abs();
                assert!(
                    gap < 1e-3 * row.iter().fold(0f32, |m, v| m.max(v.abs())),
                    "{name} position {pos}: argmax {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn hidden_states_and_mlp_activation_match_transformers() {
    let lm = model();
    let p = prompt("plain_capital");
    let tokens = ids(&p["ids"]);
    let layer = p["mlp_activation_layer"].as_u64().unwrap() as usize;
    let options = ForwardOptions {
        logits: Logits::Skip,
        hidden_states: true,
        mlp_activation: Some(layer),
    };
    let out = lm
        .model
        .forward(&Batch::single(&tokens, &Default::default()), None, &options);

    let shape: Vec<usize> = p["hidden_states_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(
        out.hidden_states.len(),
        shape[0],
        "n_layers + 1 hidden states"
    );
    let want = floats(&p["hidden_states_b64"]);
    let per = shape[1] * shape[2];
    for (i, h) in out.hidden_states.into_iter().enumerate() {
        let diff = max_rel_diff(&values(h), &want[i * per..(i + 1) * per]);
        assert!(diff < TOL, "hidden state {i}: differs by {diff:.2e}");
    }
    let act = values(out.mlp_activation.unwrap());
    let diff = max_rel_diff(&act, &floats(&p["mlp_activation_b64"]));
    assert!(
        diff < TOL,
        "down_proj input at layer {layer}: differs by {diff:.2e}"
    );
}

#[test]
fn greedy_continuation_matches_transformers() {
    let lm = model();
    let g = &golden()["greedy"];
    let prompt_ids = lm
        .tokenizer
        .encode_prompt(g["question"].as_str().unwrap(), &PromptFormat::chat())
        .unwrap();
    assert_eq!(prompt_ids, ids(&g["prompt_ids"]));
    let want = ids(&g["generated_ids"]);
    let (out, _) = lm
        .generate(&[prompt_ids], &GenerationConfig::greedy(want.len()))
        .unwrap();
    assert_eq!(out[0].generated_ids, want);
    assert_eq!(out[0].text, g["text"].as_str().unwrap());
}

#[test]
fn batched_generation_with_left_padding_matches_single_rows() {
    let lm = model();
    let questions = [
        "What is the capital of France?",
        "Name three primary colours.",
    ];
    let prompts: Vec<Vec<u32>> = questions
        .iter()
        .map(|q| {
            lm.tokenizer
                .encode_prompt(q, &PromptFormat::chat())
                .unwrap()
        })
        .collect();
    assert_ne!(
        prompts[0].len(),
        prompts[1].len(),
        "rows of different length exercise padding"
    );
    let config = GenerationConfig::greedy(12);
    let (batched, _) = lm.generate(&prompts, &config).unwrap();
    for (i, p) in prompts.iter().enumerate() {
        let (single, _) = lm.generate(std::slice::from_ref(p), &config).unwrap();
        assert_eq!(batched[i].generated_ids, single[0].generated_ids, "row {i}");
    }
}

/// The five inputs of a real SafeEdit test record (record 563: 43 to 393 tokens in the chat template), as an
/// evaluation generates them: one call, greedy, 32 new tokens. Each prompt is processed alone
/// (continuing an earlier prompt's cache over a shared beginning) and the decoding steps run
/// together over a left-padded cache; every row must be exactly what the prompt gives by itself.
#[test]
fn an_instances_inputs_together_generate_what_each_generates_alone() {
    let lm = model();
    let prompts = instance_prompts(&lm, 563);
    let lengths: Vec<usize> = prompts.iter().map(Vec::len).collect();
    let (shortest, longest) = (lengths.iter().min().unwrap(), lengths.iter().max().unwrap());
    assert!(
        longest > &(5 * shortest),
        "lengths {lengths:?} span padding"
    );
    let config = GenerationConfig::greedy(32);
    let (together, timings) = lm.generate(&prompts, &config).unwrap();
    // The inputs share the template's system prompt, and two of them a jailbreak template: those
    // beginnings come from an earlier input's cache.
    assert!(
        timings.shared_prompt_tokens > 4 * 16,
        "shared {}",
        timings.shared_prompt_tokens
    );
    for (i, p) in prompts.iter().enumerate() {
        let (alone, _) = lm.generate(std::slice::from_ref(p), &config).unwrap();
        assert_eq!(
            together[i].generated_ids, alone[0].generated_ids,
            "input {i}"
        );
        assert_eq!(together[i].stop, alone[0].stop, "input {i}");
    }
}

/// The five inputs of a real SafeEdit test record in the chat template, in EasyEdit's order.
fn instance_prompts(lm: &LanguageModel<TestBackend>, id: u64) -> Vec<Vec<u32>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/safeedit/SafeEdit_test_sample.json"
    );
    let records: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let record = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("record {id} is in the sample"));
    let g = &record["generalization test"];
    [
        &record["adversarial prompt"],
        &g["test input of only harmful question"],
        &g["test input of other attack prompt input"],
        &g["test input of other question input"],
        &g["test input of other questions and attack prompts"],
    ]
    .iter()
    .map(|text| {
        lm.tokenizer
            .encode_prompt(text.as_str().unwrap(), &PromptFormat::chat())
            .unwrap()
    })
    .collect()
}

/// Records 545 and 563 use the same jailbreak template ("Aligned"): an evaluation that keeps
/// record 545's prompts (a [`PrefixCache`] across instances) computes less of record 563's, and
/// record 563 still gets exactly what each of its inputs generates alone.
#[test]
fn prompts_kept_from_an_earlier_instance_change_no_answer_of_the_next() {
    let lm = model();
    let config = GenerationConfig::greedy(16);
    let mut reuse = PrefixCache::new(256 << 20);
    let first = instance_prompts(&lm, 545);
    lm.generate_reusing(&first, &config, &mut reuse, &mut |_| true)
        .unwrap();
    let prompts = instance_prompts(&lm, 563);
    let (kept, timings) = lm
        .generate_reusing(&prompts, &config, &mut reuse, &mut |_| true)
        .unwrap();
    let (_, within) = lm.generate(&prompts, &config).unwrap();
    assert!(
        timings.shared_prompt_tokens > within.shared_prompt_tokens + 80,
        "kept prompts serve {} tokens, the instance alone {}",
        timings.shared_prompt_tokens,
        within.shared_prompt_tokens
    );
    for (i, p) in prompts.iter().enumerate() {
        let (alone, _) = lm.generate(std::slice::from_ref(p), &config).unwrap();
        assert_eq!(kept[i].generated_ids, alone[0].generated_ids, "input {i}");
        assert_eq!(kept[i].stop, alone[0].stop, "input {i}");
    }
}

/// `--dtype bf16` keeps the matrices in bf16 and computes in f32: it must compute exactly what
/// the f32 model computes from the same bf16-rounded weights (the same products on the same
/// values, in prompt processing and in decoding), and stays near transformers' f32 logits by the
/// rounding of the weights alone (tolerance stated below).
#[test]
fn bf16_weights_compute_what_f32_computes_from_the_rounded_weights() {
    let device = Default::default();
    let bf16 = LanguageModel::<TestBackend>::load_as(
        &default_gguf(),
        &device,
        WeightDtype::Bf16,
        &mut |_, _| {},
    )
    .unwrap();
    let embed = bf16.model.matrix(WeightId::Embed).unwrap();
    assert_eq!(embed.dtype(), DType::BF16, "matrices are kept in bf16");
    let norm = bf16.model.vector(WeightId::FinalNorm).unwrap();
    assert_eq!(norm.dtype(), DType::F32, "norms stay f32");

    let f32_model = model();
    let mut rounded = f32_model.model.clone();
    let round = |m: burn::tensor::Tensor<TestBackend, 2>| m.cast(DType::BF16).cast(DType::F32);
    for id in WeightId::all(&f32_model.config) {
        match (id, f32_model.model.matrix(id)) {
            (WeightId::Layer { .. }, Some(m)) => rounded = rounded.with_matrix(id, round(m)),
            (WeightId::Embed, Some(m)) => rounded.embed_tokens = Param::from_tensor(round(m)),
            (_, None) => {}
            (other, Some(_)) => panic!("{other}: a matrix this test does not round"),
        }
    }
    let rounded = f32_model.with_model(rounded);

    for p in golden()["prompts"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let tokens = ids(&p["ids"]);
        let batch = Batch::single(&tokens, &device);
        let ours = values(bf16.model.logits(&batch));
        let same = values(rounded.model.logits(&batch));
        assert_eq!(ours, same, "{name}: bf16 weights vs the same values in f32");
        let vocab = ours.len() / tokens.len();
        let last = &ours[(tokens.len() - 1) * vocab..];
        let want = floats(&p["last_logits_b64"]);
        let diff = max_rel_diff(last, &want);
        eprintln!(
            "{name}: bf16 last-position logits vs transformers (f32) max rel diff {diff:.2e}"
        );
        assert!(diff < BF16_TOL, "{name}: bf16 logits differ by {diff:.2e}");
    }

    let g = &golden()["greedy"];
    let prompt_ids = bf16
        .tokenizer
        .encode_prompt(g["question"].as_str().unwrap(), &PromptFormat::chat())
        .unwrap();
    let config = GenerationConfig::greedy(24);
    let (ours, _) = bf16
        .generate(std::slice::from_ref(&prompt_ids), &config)
        .unwrap();
    let (same, _) = rounded.generate(&[prompt_ids], &config).unwrap();
    assert_eq!(
        ours[0].generated_ids, same[0].generated_ids,
        "decoding reads bf16 in place"
    );
}
