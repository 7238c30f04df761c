//! Text ⇄ token ids: a `tokenizers` tokenizer (from `tokenizer.json`, or rebuilt from a GGUF
//! vocabulary), the BOS/EOS rules of the model's `tokenizer_config.json` (or GGUF metadata), and
//! prompt rendering: plain text or the model's Jinja chat template.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{EngineError, Result};
use crate::weights::{GgufFile, GgufValue};
use safeedit_core::PromptFormat;

/// The special tokens and the rules for adding them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End-of-sequence ids: generation stops at any of them.
    pub eos: Vec<u32>,
    /// Padding id (falls back to the first EOS, then 0).
    pub pad: Option<u32>,
    /// Whether plain encoding prepends BOS.
    pub add_bos: bool,
    /// Whether plain encoding appends EOS.
    pub add_eos: bool,
}

impl SpecialTokens {
    /// The id used to pad batches.
    pub fn pad_id(&self) -> u32 {
        self.pad.or(self.eos.first().copied()).unwrap_or(0)
    }
}

/// A tokenizer with its special-token rules and optional chat template.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    /// Special tokens and BOS/EOS rules.
    pub special: SpecialTokens,
    /// The Jinja chat template, when the model has one.
    pub chat_template: Option<String>,
    source: PathBuf,
}

fn tok_err(path: &Path, message: impl std::fmt::Display) -> EngineError {
    EngineError::Tokenizer {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Where transformers keeps a model folder's chat template besides `tokenizer_config.json`'s
/// `chat_template` (transformers >= 4.43 saves it in the first).
pub const CHAT_TEMPLATE_FILES: [&str; 2] = ["chat_template.jinja", "chat_template.json"];

/// A chat template given as a string or as a list of `{"name", "template"}` (the one named
/// `default`, else the first).
fn template_of(value: &Value) -> Option<String> {
    match value {
        Value::String(t) => Some(t.clone()),
        Value::Array(named) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .or(named.first())
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// A token given as `"<s>"` or `{"content": "<s>", ...}` in tokenizer_config.json.
fn token_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map
            .get("content")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` and, when present beside it, `tokenizer_config.json`.
    /// `config_eos` is `config.json`'s `eos_token_id`, used when the tokenizer config names none.
    pub fn from_hf_dir(dir: &Path, config_eos: Option<Vec<u32>>) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(EngineError::MissingFile {
                path,
                what: "tokenizer (tokenizer.json)",
            });
        }
        let config = dir.join("tokenizer_config.json");
        let mut tokenizer = Self::from_files(
            &path,
            config.is_file().then_some(config.as_path()),
            config_eos,
        )?;
        // A template in its own file wins over tokenizer_config.json's, as in transformers.
        let [jinja, json_file] = CHAT_TEMPLATE_FILES.map(|name| dir.join(name));
        if jinja.is_file() {
            let text = std::fs::read_to_string(&jinja).map_err(|e| EngineError::io(&jinja, e))?;
            tokenizer.chat_template = Some(text);
        } else if json_file.is_file() {
            let text =
                std::fs::read_to_string(&json_file).map_err(|e| EngineError::io(&json_file, e))?;
            let value: Value = serde_json::from_str(&text).map_err(|e| EngineError::Json {
                path: json_file.clone(),
                message: e.to_string(),
            })?;
            let template = value.get("chat_template").and_then(template_of);
            if template.is_none() {
                return Err(EngineError::Json {
                    path: json_file,
                    message: "no `chat_template` string (or list of named templates) in it".into(),
                });
            }
            tokenizer.chat_template = template;
        }
        Ok(tokenizer)
    }

    /// Loads a `tokenizer.json` with an optional `tokenizer_config.json`.
    pub fn from_files(
        tokenizer_json: &Path,
        tokenizer_config: Option<&Path>,
        config_eos: Option<Vec<u32>>,
    ) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(tokenizer_json)
            .map_err(|e| tok_err(tokenizer_json, e))?;
        let cfg: Value = match tokenizer_config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
                serde_json::from_str(&text).map_err(|e| EngineError::Json {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
            }
            None => json!({}),
        };
        let id_of = |key: &str| token_text(cfg.get(key)).and_then(|t| inner.token_to_id(&t));
        // Without an explicit rule, follow the tokenizer.json post-processor, as transformers'
        // fast tokenizers do.
        let probe = inner
            .encode("a", true)
            .map_err(|e| tok_err(tokenizer_json, e))?;
        let probe_ids = probe.get_ids();
        let bos = id_of("bos_token");
        // `config.json` may list more end ids (chat models end a turn with their own token), and
        // generation stops at any of them, as transformers' generation config does.
        let mut eos: Vec<u32> = id_of("eos_token").into_iter().collect();
        for id in config_eos.unwrap_or_default() {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
        let add_bos = cfg
            .get("add_bos_token")
            .and_then(Value::as_bool)
            .unwrap_or_else(|| {
                bos.is_some() && probe_ids.first() == bos.as_ref() && probe_ids.len() > 1
            });
        let add_eos = cfg
            .get("add_eos_token")
            .and_then(Value::as_bool)
            .unwrap_or_else(|| {
                !eos.is_empty() && probe_ids.len() > 1 && eos.contains(probe_ids.last().unwrap())
            });
        let chat_template = cfg.get("chat_template").and_then(template_of);
        let special = SpecialTokens {
            bos,
            eos,
            pad: id_of("pad_token"),
            add_bos,
            add_eos,
        };
        Ok(Self {
            inner,
            special,
            chat_template,
            source: tokenizer_json.to_path_buf(),
        })
    }

    /// Rebuilds the tokenizer stored in a GGUF file's `tokenizer.ggml.*` metadata
    /// (byte-level BPE vocabularies: `tokenizer.ggml.model = gpt2`).
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let path = file.path();
        let model = file.get_str("tokenizer.ggml.model").unwrap_or("?");
        if model != "gpt2" {
            return Err(tok_err(
                path,
                format!(
                    "tokenizer.ggml.model `{model}` is not supported from GGUF (only byte-level \
                     BPE `gpt2`); load the model from a Hugging Face directory instead"
                ),
            ));
        }
        let strings = |key: &str| -> Result<Vec<&str>> {
            let items = file
                .get(key)
                .and_then(GgufValue::as_array)
                .ok_or_else(|| tok_err(path, format!("metadata `{key}` is missing")))?;
            items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| tok_err(path, format!("`{key}` holds a non-string")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<u64> = file
            .get("tokenizer.ggml.token_type")
            .and_then(GgufValue::as_array)
            .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(1)).collect())
            .unwrap_or_default();
        let pre = file.get_str("tokenizer.ggml.pre").unwrap_or("default");
        let pre_tokenizer = match pre {
            "smollm" => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
            ]}),
            "default" | "gpt2" | "gpt-2" => json!(
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
            ),
            other => {
                return Err(tok_err(
                    path,
                    format!(
                        "tokenizer.ggml.pre `{other}` is not supported (supported: smollm, \
                         default, gpt2)"
                    ),
                ));
            }
        };
        // Control (3) and user-defined (4) tokens are matched before BPE, as llama.cpp does.
        let added: Vec<Value> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(types.get(*i), Some(3 | 4)))
            .map(|(i, t)| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": types[i] == 3})
            })
            .collect();
        let vocab: serde_json::Map<String, Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), json!(i)))
            .collect();
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges}
        });
        let inner =
            tokenizers::Tokenizer::from_bytes(spec.to_string()).map_err(|e| tok_err(path, e))?;
        let id = |key: &str| file.get(key).and_then(GgufValue::as_u64).map(|v| v as u32);
        let flag = |key: &str| file.get(key).and_then(GgufValue::as_bool);
        let special = SpecialTokens {
            bos: id("tokenizer.ggml.bos_token_id"),
            eos: id("tokenizer.ggml.eos_token_id").into_iter().collect(),
            pad: id("tokenizer.ggml.padding_token_id"),
            add_bos: flag("tokenizer.ggml.add_bos_token").unwrap_or(false),
            add_eos: flag("tokenizer.ggml.add_eos_token").unwrap_or(false),
        };
        Ok(Self {
            inner,
            special,
            chat_template: file.get_str("tokenizer.chat_template").map(str::to_string),
            source: path.to_path_buf(),
        })
    }

    /// A byte-level tokenizer for the `tiny` test model: ids 0–255 are the bytes, 256–258 are
    /// `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`; no merges; a ChatML template.
    pub fn byte_level() -> Self {
        let vocab: serde_json::Map<String, Value> = (0u8..=255)
            .map(|b| (byte_char(b).to_string(), json!(b)))
            .collect();
        let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
        let added: Vec<Value> = specials
            .iter()
            .enumerate()
            .map(|(i, t)| {
                json!({"id": 256 + i, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let spec = json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": []}
        });
        let inner = tokenizers::Tokenizer::from_bytes(spec.to_string())
            .expect("the built-in byte-level tokenizer is valid");
        let template = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n\
                        {{ message['content'] }}<|im_end|>\n{% endfor %}\
                        {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        Self {
            inner,
            special: SpecialTokens {
                bos: Some(257),
                eos: vec![258],
                pad: Some(256),
                add_bos: false,
                add_eos: false,
            },
            chat_template: Some(template.to_string()),
            source: PathBuf::from("<built-in byte-level tokenizer>"),
        }
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json`.
    pub fn save_json(&self, path: &Path) -> Result<()> {
        self.inner.save(path, false).map_err(|e| tok_err(path, e))
    }

    /// Writes `tokenizer.json` and a `tokenizer_config.json` with the special tokens, their
    /// rules and the chat template into a model directory (read back by
    /// [`TextTokenizer::from_hf_dir`]).
    pub fn save_hf_dir(&self, dir: &Path) -> Result<()> {
        let partial = dir.join("tokenizer.json.partial");
        self.save_json(&partial)?;
        let path = dir.join("tokenizer.json");
        std::fs::rename(&partial, &path).map_err(|e| EngineError::io(&path, e))?;
        let name = |id: Option<u32>| id.and_then(|id| self.id_to_token(id));
        let config = json!({
            "bos_token": name(self.special.bos),
            "eos_token": name(self.special.eos.first().copied()),
            "pad_token": name(self.special.pad),
            "add_bos_token": self.special.add_bos,
            "add_eos_token": self.special.add_eos,
            "chat_template": self.chat_template,
        });
        let path = dir.join("tokenizer_config.json");
        std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json"))
            .map_err(|e| EngineError::io(&path, e))
    }

    /// Where the tokenizer came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// A token's id.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// A token's string.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Encodes text; with `add_special`, BOS/EOS are added as the model's rules say. Special
    /// tokens written in the text (e.g. `<|im_start|>`) are recognised.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| tok_err(&self.source, e))?;
        let mut ids = Vec::with_capacity(encoding.len() + 2);
        if add_special && self.special.add_bos {
            ids.extend(self.special.bos);
        }
        ids.extend_from_slice(encoding.get_ids());
        if add_special && self.special.add_eos {
            ids.extend(self.special.eos.first().copied());
        }
        Ok(ids)
    }

    /// Decodes ids to text.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| tok_err(&self.source, e))
    }

    /// Where a template was looked for, for messages (`""` for GGUF and built-in tokenizers).
    pub fn template_places(&self) -> String {
        if self
            .source
            .file_name()
            .is_some_and(|n| n == "tokenizer.json")
        {
            format!(
                " (looked in {}, {} and tokenizer_config.json's `chat_template` beside it)",
                CHAT_TEMPLATE_FILES[0], CHAT_TEMPLATE_FILES[1]
            )
        } else {
            String::new()
        }
    }

    /// The prompt string for a user message in the given format.
    pub fn render_prompt(&self, user: &str, format: &PromptFormat) -> Result<String> {
        match format {
            PromptFormat::Plain => Ok(user.to_string()),
            PromptFormat::Chat { system } => {
                let template = self.chat_template.as_deref().ok_or_else(|| {
                    EngineError::Template(format!(
                        "{} has no chat template{}; use the plain prompt format",
                        self.source.display(),
                        self.template_places()
                    ))
                })?;
                let mut messages = Vec::new();
                if let Some(system) = system {
                    messages.push(json!({"role": "system", "content": system}));
                }
                messages.push(json!({"role": "user", "content": user}));
                let token =
                    |id: Option<u32>| id.and_then(|i| self.id_to_token(i)).unwrap_or_default();
                render_chat_template(
                    template,
                    &messages,
                    &token(self.special.bos),
                    &token(self.special.eos.first().copied()),
                )
            }
        }
    }

    /// Token ids of a user message in the given format: plain text gets the BOS/EOS rules, a
    /// rendered chat template is encoded as is (templates write their own special tokens).
    pub fn encode_prompt(&self, user: &str, format: &PromptFormat) -> Result<Vec<u32>> {
        let text = self.render_prompt(user, format)?;
        self.encode(&text, matches!(format, PromptFormat::Plain))
    }
}

/// Renders a Hugging Face chat template the way transformers does (Jinja with `trim_blocks` and
/// `lstrip_blocks`, `raise_exception`, Python string methods), with the generation prompt.
pub fn render_chat_template(
    template: &str,
    messages: &[Value],
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| EngineError::Template(e.to_string()))?;
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |message: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                message,
            ))
        },
    );
    env.add_template("chat", template)
        .map_err(|e| EngineError::Template(e.to_string()))?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| EngineError::Template(e.to_string()))?;
    tmpl.render(minijinja::context! {
        messages => minijinja::Value::from(minijinja::value::Serde(messages)),
        add_generation_prompt => true,
        bos_token => bos_token,
        eos_token => eos_token,
    })
    .map_err(|e| EngineError::Template(e.to_string()))
}

/// GPT-2's byte-to-unicode map: printable bytes map to themselves, the rest to U+0100 onwards.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return b as char;
    }
    let offset = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + offset).expect("valid code point")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_round_trips_text_and_specials() {
        let tok = TextTokenizer::byte_level();
        assert_eq!(tok.vocab_size(), 259);
        let ids = tok.encode("Hi é!", false).unwrap();
        assert_eq!(ids, vec![72, 105, 32, 0xC3, 0xA9, 33]);
        assert_eq!(tok.decode(&ids, false).unwrap(), "Hi é!");
        let chat = tok.encode_prompt("hey", &PromptFormat::chat()).unwrap();
        assert_eq!(chat[0], 257);
        assert_eq!(
            tok.decode(&chat, false).unwrap(),
            "<|im_start|>user\nhey<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn byte_char_matches_gpt2_examples() {
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(b'a'), 'a');
    }

    #[test]
    fn chat_template_supports_python_methods_and_exceptions() {
        let template = "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('bad') }}{% endif %}\
            {% for m in messages %}[{{ m['role'].upper() }}] {{ m['content'].strip() }}\n{% endfor %}";
        let out = render_chat_template(
            template,
            &[json!({"role": "user", "content": "  hi  "})],
            "",
            "",
        )
        .unwrap();
        assert_eq!(out, "[USER] hi\n");
        let err = render_chat_template(
            template,
            &[json!({"role": "assistant", "content": "x"})],
            "",
            "",
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad"), "{err}");
    }

    #[test]
    fn missing_tokenizer_json_is_named() {
        let dir = std::env::temp_dir().join("safeedit-no-tokenizer");
        std::fs::create_dir_all(&dir).unwrap();
        let err = TextTokenizer::from_hf_dir(&dir, None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("tokenizer.json") && msg.contains("not found"),
            "{msg}"
        );
    }
}
