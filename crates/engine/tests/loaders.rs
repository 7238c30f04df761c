//! Loader round trips on the seeded `tiny` model (safetensors single / sharded / bf16, GGUF with
//! llama.cpp's Q/K permutation) and the error each kind of bad input must produce.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::gguf_writer::{GgufWriter, Meta};
use common::{
    TestBackend, export_all, max_rel_diff, tiny_config_json, values, write_tiny_dir_meta,
};
use safeedit_engine::weights::{RawTensor, SaveDtype, write_safetensors};
use safeedit_engine::{Batch, LanguageModel, LayerParam, LlamaConfig, PromptFormat, WeightId};

type B = TestBackend;

const TOKENS: [u32; 7] = [72, 101, 108, 108, 111, 33, 10];

fn tiny_logits(model: &safeedit_engine::Llama<B>) -> Vec<f32> {
    values(model.logits(&Batch::single(&TOKENS, &Default::default())))
}

fn untied_tiny() -> (LlamaConfig, safeedit_engine::Llama<B>) {
    let config = LlamaConfig::tiny();
    let model = config.init_seeded::<B>(7, &Default::default());
    (config, model)
}

fn load_err(path: &Path) -> String {
    LanguageModel::<B>::load(path, &Default::default())
        .unwrap_err()
        .to_string()
}

/// A Hugging Face folder of the untied tiny model (config, tokenizer, one f32 safetensors file)
/// whose tensors `edit` may change before they are written.
fn tiny_hf_dir(
    edit: impl FnOnce(&mut Vec<(String, RawTensor)>),
) -> (tempfile::TempDir, LlamaConfig, safeedit_engine::Llama<B>) {
    let dir = tempfile::tempdir().unwrap();
    let (config, model) = untied_tiny();
    write_tiny_dir_meta(dir.path(), &tiny_config_json());
    let mut tensors = export_all(&model, &config);
    edit(&mut tensors);
    write_safetensors(
        &dir.path().join("model.safetensors"),
        &tensors,
        SaveDtype::F32,
        None,
    )
    .unwrap();
    (dir, config, model)
}

#[test]
fn safetensors_single_file_round_trip_is_exact() {
    let (dir, config, model) = tiny_hf_dir(|_| {});
    let lm = LanguageModel::<B>::load(dir.path(), &Default::default()).unwrap();
    assert_eq!(lm.config, config);
    assert_eq!(tiny_logits(&lm.model), tiny_logits(&model));
    assert_eq!(lm.tokenizer.special.eos, vec![258]);
}

#[test]
fn sharded_checkpoint_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (config, model) = untied_tiny();
    write_tiny_dir_meta(dir.path(), &tiny_config_json());
    let tensors = export_all(&model, &config);
    let (first, second) = tensors.split_at(tensors.len() / 2);
    let mut weight_map = HashMap::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        write_safetensors(&dir.path().join(file), part, SaveDtype::F32, None).unwrap();
        for (name, _) in part {
            weight_map.insert(name.clone(), file.to_string());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let lm = LanguageModel::<B>::load(dir.path(), &Default::default()).unwrap();
    assert_eq!(tiny_logits(&lm.model), tiny_logits(&model));
}

#[test]
fn bf16_and_f16_checkpoints_are_converted_on_load() {
    let (config, model) = untied_tiny();
    type Rounding = fn(f32) -> f32;
    let round_trips: [(SaveDtype, Rounding); 2] = [
        (SaveDtype::Bf16, |v| half::bf16::from_f32(v).to_f32()),
        (SaveDtype::F16, |v| half::f16::from_f32(v).to_f32()),
    ];
    for (dtype, round) in round_trips {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_dir_meta(dir.path(), &tiny_config_json());
        let path = dir.path().join("model.safetensors");
        write_safetensors(&path, &export_all(&model, &config), dtype, None).unwrap();
        let lm = LanguageModel::<B>::load(dir.path(), &Default::default()).unwrap();
        // Every weight is the half-precision rounding of the original.
        let id = WeightId::layer(1, LayerParam::DownProj);
        let original = model.export(id).unwrap().data;
        let loaded = lm.model.export(id).unwrap().data;
        for (a, b) in loaded.iter().zip(&original) {
            assert_eq!(*a, round(*b), "{dtype:?}");
        }
        let diff = max_rel_diff(&tiny_logits(&lm.model), &tiny_logits(&model));
        assert!(diff < 2e-2, "{dtype:?}: {diff}");
    }
}

#[test]
fn tokenizer_config_sets_bos_eos_rules_and_chat_template() {
    let (dir, ..) = tiny_hf_dir(|_| {});
    let tokenizer_config = serde_json::json!({
        "add_bos_token": true,
        "add_eos_token": false,
        "bos_token": {"content": "<|im_start|>", "lstrip": false},
        "eos_token": "<|im_end|>",
        "pad_token": null,
        "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}"
    });
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        tokenizer_config.to_string(),
    )
    .unwrap();
    let lm = LanguageModel::<B>::load(dir.path(), &Default::default()).unwrap();
    let special = &lm.tokenizer.special;
    assert_eq!(
        (special.bos, special.eos.clone(), special.pad),
        (Some(257), vec![258], None)
    );
    assert_eq!(special.pad_id(), 258, "padding falls back to EOS");
    // Plain text gets BOS; a rendered chat template writes its own.
    assert_eq!(
        lm.tokenizer
            .encode_prompt("hi", &PromptFormat::Plain)
            .unwrap(),
        vec![257, 104, 105]
    );
    assert_eq!(
        lm.tokenizer
            .render_prompt("hi", &PromptFormat::chat())
            .unwrap(),
        "<|im_start|>[user] hi"
    );
    assert_eq!(
        lm.tokenizer
            .encode_prompt("hi", &PromptFormat::chat())
            .unwrap()[0],
        257
    );
    assert_eq!(
        lm.prompt_format,
        PromptFormat::Plain,
        "HF directories default to plain text"
    );

    // A malformed tokenizer_config.json is named.
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        "{\"add_bos_token\": tru",
    )
    .unwrap();
    let msg = load_err(dir.path());
    assert!(msg.contains("tokenizer_config.json"), "{msg}");
}

/// llama.cpp's converter permutation of Q/K rows (what `unpermute_rows` must undo).
fn llama_cpp_permute(t: &RawTensor, n_heads: usize) -> Vec<f32> {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let hd = rows / n_heads;
    let mut out = vec![0.0; t.data.len()];
    for h in 0..n_heads {
        for j in 0..2 {
            for i in 0..hd / 2 {
                let src = (h * hd + j * hd / 2 + i) * cols;
                let dst = (h * hd + 2 * i + j) * cols;
                out[dst..dst + cols].copy_from_slice(&t.data[src..src + cols]);
            }
        }
    }
    out
}

fn tiny_gguf(config: &LlamaConfig, model: &safeedit_engine::Llama<B>) -> GgufWriter {
    let tok = safeedit_engine::TextTokenizer::byte_level();
    let tokens: Vec<String> = (0..259).map(|i| tok.id_to_token(i).unwrap()).collect();
    let types: Vec<i32> = (0..259).map(|i| if i < 256 { 1 } else { 3 }).collect();
    let mut w = GgufWriter::default();
    w.meta("general.architecture", Meta::Str("llama".into()))
        .meta("general.name", Meta::Str("tiny gguf".into()))
        .meta("llama.block_count", Meta::U32(config.n_layers as u32))
        .meta("llama.embedding_length", Meta::U32(config.d_model as u32))
        .meta("llama.feed_forward_length", Meta::U32(config.d_ff as u32))
        .meta(
            "llama.attention.head_count",
            Meta::U32(config.n_heads as u32),
        )
        .meta(
            "llama.attention.head_count_kv",
            Meta::U32(config.n_kv_heads as u32),
        )
        .meta(
            "llama.attention.layer_norm_rms_epsilon",
            Meta::F32(config.rms_norm_eps as f32),
        )
        .meta("llama.rope.freq_base", Meta::F32(config.rope_theta as f32))
        .meta("llama.context_length", Meta::U32(config.max_seq_len as u32))
        .meta("tokenizer.ggml.model", Meta::Str("gpt2".into()))
        .meta("tokenizer.ggml.pre", Meta::Str("default".into()))
        .meta("tokenizer.ggml.tokens", Meta::Strs(tokens))
        .meta("tokenizer.ggml.merges", Meta::Strs(vec![]))
        .meta("tokenizer.ggml.token_type", Meta::I32s(types))
        .meta("tokenizer.ggml.bos_token_id", Meta::U32(257))
        .meta("tokenizer.ggml.eos_token_id", Meta::U32(258))
        .meta(
            "tokenizer.chat_template",
            Meta::Str(tok.chat_template.clone().unwrap()),
        );
    for id in WeightId::all(config) {
        let raw = model.export(id).unwrap();
        let data = match id {
            WeightId::Layer {
                param: LayerParam::QProj,
                ..
            } => llama_cpp_permute(&raw, config.n_heads),
            WeightId::Layer {
                param: LayerParam::KProj,
                ..
            } => llama_cpp_permute(&raw, config.n_kv_heads),
            _ => raw.data.clone(),
        };
        w.tensor(&id.gguf_name(), &raw.shape, &data);
    }
    w
}

#[test]
fn gguf_round_trip_undoes_qk_permutation() {
    let dir = tempfile::tempdir().unwrap();
    let (config, model) = untied_tiny();
    let path = dir.path().join("tiny.gguf");
    tiny_gguf(&config, &model).write(&path);
    let lm = LanguageModel::<B>::load(&path, &Default::default()).unwrap();
    assert_eq!(lm.config, config);
    assert_eq!(lm.name, "tiny");
    assert_eq!(tiny_logits(&lm.model), tiny_logits(&model));
    // The tokenizer rebuilt from GGUF metadata encodes like the byte-level original.
    assert_eq!(
        lm.tokenizer.encode("Hello!\n", false).unwrap(),
        TOKENS.to_vec()
    );
    assert_eq!(lm.tokenizer.special.eos, vec![258]);
    assert_eq!(lm.prompt_format, PromptFormat::chat());
}

#[test]
fn gguf_with_bad_magic_or_truncated_data_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (config, model) = untied_tiny();
    let bytes = tiny_gguf(&config, &model).to_bytes();

    let bad_magic = dir.path().join("magic.gguf");
    let mut b = bytes.clone();
    b[..4].copy_from_slice(b"GGML");
    std::fs::write(&bad_magic, b).unwrap();
    let msg = load_err(&bad_magic);
    assert!(
        msg.contains("magic.gguf") && msg.contains("bad magic"),
        "{msg}"
    );

    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let msg = load_err(&truncated);
    assert!(
        msg.contains("truncated.gguf") && msg.contains("runs past the end"),
        "{msg}"
    );

    let header_only = dir.path().join("header.gguf");
    std::fs::write(&header_only, &bytes[..200]).unwrap();
    let msg = load_err(&header_only);
    assert!(
        msg.contains("header.gguf") && msg.contains("file ends"),
        "{msg}"
    );
}

#[test]
fn missing_config_json_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let msg = load_err(dir.path());
    assert!(
        msg.contains("config.json") && msg.contains("not found"),
        "{msg}"
    );
}

#[test]
fn unsupported_model_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config_json();
    config["model_type"] = "gpt_neox".into();
    write_tiny_dir_meta(dir.path(), &config);
    let msg = load_err(dir.path());
    assert!(
        msg.contains("config.json") && msg.contains("unsupported model_type `gpt_neox`"),
        "{msg}"
    );
}

#[test]
fn config_json_missing_a_field_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config_json();
    config.as_object_mut().unwrap().remove("hidden_size");
    write_tiny_dir_meta(dir.path(), &config);
    let msg = load_err(dir.path());
    assert!(
        msg.contains("config.json") && msg.contains("missing field `hidden_size`"),
        "{msg}"
    );
}

#[test]
fn missing_tensor_is_named_with_its_file() {
    let (dir, ..) =
        tiny_hf_dir(|t| t.retain(|(name, _)| name != "model.layers.1.mlp.down_proj.weight"));
    let msg = load_err(dir.path());
    assert!(
        msg.contains("model.safetensors")
            && msg.contains("missing tensor `model.layers.1.mlp.down_proj.weight`"),
        "{msg}"
    );
}

#[test]
fn mis_shaped_tensor_is_named_with_both_shapes() {
    let (dir, ..) = tiny_hf_dir(|tensors| {
        for (name, t) in tensors {
            if name == "model.layers.0.self_attn.k_proj.weight" {
                t.shape.reverse();
            }
        }
    });
    let msg = load_err(dir.path());
    assert!(
        msg.contains("model.layers.0.self_attn.k_proj.weight")
            && msg.contains("has shape [64, 32], expected [32, 64]"),
        "{msg}"
    );
}

#[test]
fn missing_tokenizer_json_is_named() {
    let (dir, ..) = tiny_hf_dir(|_| {});
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let msg = load_err(dir.path());
    assert!(
        msg.contains("tokenizer.json") && msg.contains("not found"),
        "{msg}"
    );
}

#[test]
fn missing_shard_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_dir_meta(dir.path(), &tiny_config_json());
    let index = serde_json::json!({"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors"}});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let msg = load_err(dir.path());
    assert!(
        msg.contains("model-00001-of-00002.safetensors") && msg.contains("not found"),
        "{msg}"
    );
}

#[test]
fn unknown_model_path_is_explained() {
    let msg = load_err(Path::new("/nonexistent/model.bin"));
    assert!(
        msg.contains("/nonexistent/model.bin") && msg.contains(".gguf"),
        "{msg}"
    );
}

/// The tiny model's folder under `name`, with the tokenizer files of SmolLM2-135M-Instruct as
/// transformers 5.24 saves them (`tokenizer.save_pretrained`): the chat template in
/// `chat_template.jinja`, none in `tokenizer_config.json` (fixtures/transformers5-smollm2).
fn transformers5_dir(parent: &Path, name: &str, with_jinja: bool) -> std::path::PathBuf {
    let (tiny, ..) = tiny_hf_dir(|_| {});
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny.path().join(file), dir.join(file)).unwrap();
    }
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/transformers5-smollm2");
    std::fs::copy(
        fixtures.join("tokenizer_config.json"),
        dir.join("tokenizer_config.json"),
    )
    .unwrap();
    if with_jinja {
        std::fs::copy(
            fixtures.join("chat_template.jinja"),
            dir.join("chat_template.jinja"),
        )
        .unwrap();
    }
    dir
}

#[test]
fn chat_templates_saved_beside_the_tokenizer_are_found_and_a_missing_one_is_reported() {
    let parent = tempfile::tempdir().unwrap();
    let device = Default::default();

    // Saved by transformers 5: the template is only in chat_template.jinja, and a SmolLM2 model
    // prompts in it, as from GGUF.
    let dir = transformers5_dir(parent.path(), "SmolLM2-135M-Instruct", true);
    let lm = LanguageModel::<B>::load(&dir, &device).unwrap();
    assert_eq!(lm.prompt_format, PromptFormat::chat());
    assert!(lm.warnings.is_empty(), "{:?}", lm.warnings);
    assert_eq!(
        lm.tokenizer
            .render_prompt("hi", &PromptFormat::chat())
            .unwrap(),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
         Face<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );

    // The same without its template: plain text, with a warning naming where it looked.
    std::fs::remove_file(dir.join("chat_template.jinja")).unwrap();
    let lm = LanguageModel::<B>::load(&dir, &device).unwrap();
    assert_eq!(lm.prompt_format, PromptFormat::Plain);
    let [warning] = &lm.warnings[..] else {
        panic!("one warning expected: {:?}", lm.warnings)
    };
    for needle in [
        "SmolLM2",
        "no chat template",
        "chat_template.jinja",
        "chat_template.json",
    ] {
        assert!(warning.contains(needle), "{needle}: {warning}");
    }
    let err = lm
        .tokenizer
        .render_prompt("hi", &PromptFormat::chat())
        .unwrap_err()
        .to_string();
    assert!(err.contains("chat_template.jinja"), "{err}");

    // chat_template.json, the older file: a string or named templates.
    std::fs::write(
        dir.join("chat_template.json"),
        r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "[{{ messages[0]['content'] }}]"}]}"#,
    )
    .unwrap();
    let lm = LanguageModel::<B>::load(&dir, &device).unwrap();
    assert_eq!(
        lm.tokenizer
            .render_prompt("hi", &PromptFormat::chat())
            .unwrap(),
        "[hi]"
    );
    // A file with no template in it is named, not skipped.
    std::fs::write(dir.join("chat_template.json"), r#"{"template": "x"}"#).unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("chat_template.json") && msg.contains("no `chat_template`"),
        "{msg}"
    );

    // Other families keep plain text by default and need no template.
    let dir = transformers5_dir(parent.path(), "llama-2-7b-chat-hf", false);
    let lm = LanguageModel::<B>::load(&dir, &device).unwrap();
    assert_eq!(lm.prompt_format, PromptFormat::Plain);
    assert!(lm.warnings.is_empty(), "{:?}", lm.warnings);
}
