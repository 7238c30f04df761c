//! A BERT-family encoder in burn (BERT and RoBERTa, as transformers' `modeling_bert.py` /
//! `modeling_roberta.py`): word + position + token-type embeddings with LayerNorm, post-norm
//! encoder layers (bidirectional attention with a padding mask, exact-erf GELU MLP), loaded from a
//! Hugging Face directory (`config.json`, `model.safetensors`, `tokenizer.json`).

use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::module::{attention, embedding};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Int, Tensor, TensorData};
use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::model::project;
use crate::weights::SafetensorsStore;

/// A BERT-family encoder's hyperparameters, validated.
#[derive(Config, Debug, PartialEq)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Encoder layers.
    pub n_layers: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Rows of the position table.
    pub max_positions: usize,
    /// Rows of the token-type table.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Padding id.
    pub pad_token_id: u32,
    /// RoBERTa numbers positions from `pad_token_id + 1` and gives padding `pad_token_id`;
    /// BERT numbers them from 0.
    pub roberta_positions: bool,
}

/// Hugging Face `config.json` of a BERT or RoBERTa checkpoint, field for field.
#[derive(Debug, Clone, Deserialize)]
pub struct HfBertConfig {
    /// `bert`, `roberta` or `xlm-roberta`.
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Only `gelu` is supported.
    #[serde(default)]
    pub hidden_act: Option<String>,
    /// Position table size.
    pub max_position_embeddings: usize,
    /// Token-type table size.
    #[serde(default = "one")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "bert_eps")]
    pub layer_norm_eps: f64,
    /// Padding id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Only `absolute` is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    /// Labels of a classification head.
    #[serde(default)]
    pub id2label: Option<std::collections::BTreeMap<String, String>>,
}

fn one() -> usize {
    1
}

fn bert_eps() -> f64 {
    1e-12
}

impl HfBertConfig {
    /// Reads `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(EngineError::MissingFile {
                path: path.to_path_buf(),
                what: "encoder config",
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| EngineError::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Validates into a [`BertConfig`].
    pub fn into_config(self, path: &Path) -> Result<BertConfig> {
        let err = |field: &str, message: String| EngineError::Config {
            path: path.to_path_buf(),
            field: field.to_string(),
            message,
        };
        let roberta = match self.model_type.as_str() {
            "bert" => false,
            "roberta" | "xlm-roberta" => true,
            other => {
                return Err(EngineError::UnsupportedModel {
                    path: path.to_path_buf(),
                    model_type: other.to_string(),
                });
            }
        };
        if let Some(act) = &self.hidden_act
            && act != "gelu"
        {
            return Err(err(
                "hidden_act",
                format!("`{act}` is not supported (only gelu)"),
            ));
        }
        if let Some(kind) = &self.position_embedding_type
            && kind != "absolute"
        {
            return Err(err(
                "position_embedding_type",
                format!("`{kind}` is not supported"),
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(err(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        Ok(BertConfig::new(
            self.vocab_size,
            self.hidden_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.intermediate_size,
            self.max_position_embeddings,
            self.type_vocab_size,
            self.layer_norm_eps,
            self.pad_token_id.unwrap_or(if roberta { 1 } else { 0 }),
            roberta,
        ))
    }
}

/// A linear map with bias, weight in PyTorch layout `[out, in]`.
#[derive(Module, Debug)]
pub struct Dense<B: Backend> {
    /// `[out, in]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[out]`.
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Dense<B> {
    /// `x · Wᵀ + b`.
    ///
    /// # Shapes
    /// - x: `[..., in]`
    /// - output: `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        project(self.weight.val(), x) + self.bias.val().unsqueeze()
    }
}

/// LayerNorm with weight and bias, computed in f32.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// `[hidden]`.
    pub bias: Param<Tensor<B, 1>>,
    /// Epsilon.
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// Normalises the last dimension.
    ///
    /// # Shapes
    /// - x: `[..., hidden]`
    /// - output: `[..., hidden]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let mean = x.clone().mean_dim(D - 1);
        let centered = x - mean;
        let var = centered.clone().square().mean_dim(D - 1);
        centered / (var + self.eps).sqrt() * self.weight.val().unsqueeze()
            + self.bias.val().unsqueeze()
    }
}

/// One post-norm encoder layer.
#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    /// Query projection.
    pub query: Dense<B>,
    /// Key projection.
    pub key: Dense<B>,
    /// Value projection.
    pub value: Dense<B>,
    /// Attention output projection.
    pub attention_output: Dense<B>,
    /// LayerNorm after attention.
    pub attention_norm: LayerNorm<B>,
    /// MLP up projection.
    pub intermediate: Dense<B>,
    /// MLP down projection.
    pub output: Dense<B>,
    /// LayerNorm after the MLP.
    pub output_norm: LayerNorm<B>,
    /// Attention heads.
    pub n_heads: usize,
}

impl<B: Backend> BertLayer<B> {
    /// # Shapes
    /// - x: `[batch, seq, hidden]`
    /// - pad_bias: `[batch, 1, 1, seq]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>, pad_bias: Option<&Tensor<B, 4>>) -> Tensor<B, 3> {
        let [batch, seq, hidden] = x.dims();
        let head_dim = hidden / self.n_heads;
        let heads = |t: Tensor<B, 3>| {
            t.reshape([batch, seq, self.n_heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = heads(self.query.forward(x.clone()));
        let k = heads(self.key.forward(x.clone()));
        let v = heads(self.value.forward(x.clone()));
        let bias = pad_bias.map(|b| b.clone().expand([batch, self.n_heads, seq, seq]));
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        let context = attention(q, k, v, None, bias, options)
            .swap_dims(1, 2)
            .reshape([batch, seq, hidden]);
        let h = self
            .attention_norm
            .forward(self.attention_output.forward(context) + x);
        let mlp = self
            .output
            .forward(gelu(self.intermediate.forward(h.clone())));
        self.output_norm.forward(mlp + h)
    }
}

/// The encoder.
#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    /// `[vocab, hidden]`.
    pub word_embeddings: Param<Tensor<B, 2>>,
    /// `[max_positions, hidden]`.
    pub position_embeddings: Param<Tensor<B, 2>>,
    /// `[type_vocab, hidden]`.
    pub token_type_embeddings: Param<Tensor<B, 2>>,
    /// LayerNorm of the embeddings.
    pub embeddings_norm: LayerNorm<B>,
    /// Encoder layers.
    pub layers: Vec<BertLayer<B>>,
    /// Padding id.
    pub pad_token_id: u32,
    /// RoBERTa position numbering.
    pub roberta_positions: bool,
}

impl<B: Backend> BertEncoder<B> {
    /// Last hidden states of right-padded rows.
    ///
    /// # Shapes
    /// - output: `[batch, longest row, hidden]`
    pub fn forward(&self, rows: &[Vec<u32>], device: &B::Device) -> Tensor<B, 3> {
        let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
        let batch = rows.len();
        let pad = self.pad_token_id;
        let mut ids = Vec::with_capacity(batch * seq);
        let mut positions = Vec::with_capacity(batch * seq);
        let mut bias = Vec::with_capacity(batch * seq);
        for row in rows {
            for i in 0..seq {
                let real = i < row.len();
                ids.push(if real { row[i] } else { pad } as i64);
                positions.push(match (self.roberta_positions, real) {
                    (true, true) => pad as i64 + 1 + i as i64,
                    (true, false) => pad as i64,
                    (false, _) => i as i64,
                });
                bias.push(if real { 0.0f32 } else { f32::MIN });
            }
        }
        let int =
            |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [batch, seq]), device);
        let ids = int(ids);
        let types = Tensor::<B, 2, Int>::zeros([batch, seq], device);
        let x = embedding(self.word_embeddings.val(), ids)
            + embedding(self.position_embeddings.val(), int(positions))
            + embedding(self.token_type_embeddings.val(), types);
        let mut x = self.embeddings_norm.forward(x);
        let padded = rows.iter().any(|r| r.len() < seq);
        let pad_bias = padded
            .then(|| Tensor::<B, 4>::from_data(TensorData::new(bias, [batch, 1, 1, seq]), device));
        for layer in &self.layers {
            x = layer.forward(x, pad_bias.as_ref());
        }
        x
    }
}

/// Reads BERT-family tensors from a safetensors checkpoint under an optional prefix
/// (`bert.`, `roberta.`, or none for a bare `BertModel` such as MiniLM).
pub(crate) struct BertWeights<'a, B: Backend> {
    pub store: &'a SafetensorsStore,
    pub prefix: String,
    pub path: PathBuf,
    pub device: &'a B::Device,
}

impl<B: Backend> BertWeights<'_, B> {
    fn raw(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let raw = self
            .store
            .load_name(&full)?
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.path.clone(),
                tensor: full.clone(),
            })?;
        if raw.shape != shape {
            return Err(EngineError::TensorShape {
                path: self.path.clone(),
                tensor: full,
                expected: shape.to_vec(),
                found: raw.shape,
            });
        }
        Ok(raw.data)
    }

    pub fn matrix(&self, name: &str, shape: [usize; 2]) -> Result<Param<Tensor<B, 2>>> {
        let data = self.raw(name, &shape)?;
        Ok(Param::from_tensor(Tensor::from_data(
            TensorData::new(data, shape),
            self.device,
        )))
    }

    pub fn vector(&self, name: &str, len: usize) -> Result<Param<Tensor<B, 1>>> {
        let data = self.raw(name, &[len])?;
        Ok(Param::from_tensor(Tensor::from_data(
            TensorData::new(data, [len]),
            self.device,
        )))
    }

    pub fn dense(&self, name: &str, out: usize, inp: usize) -> Result<Dense<B>> {
        Ok(Dense {
            weight: self.matrix(&format!("{name}.weight"), [out, inp])?,
            bias: self.vector(&format!("{name}.bias"), out)?,
        })
    }

    fn norm(&self, name: &str, len: usize, eps: f64) -> Result<LayerNorm<B>> {
        Ok(LayerNorm {
            weight: self.vector(&format!("{name}.weight"), len)?,
            bias: self.vector(&format!("{name}.bias"), len)?,
            eps,
        })
    }

    /// The whole encoder.
    pub fn encoder(&self, c: &BertConfig) -> Result<BertEncoder<B>> {
        let h = c.hidden;
        let layers = (0..c.n_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                Ok(BertLayer {
                    query: self.dense(&format!("{p}.attention.self.query"), h, h)?,
                    key: self.dense(&format!("{p}.attention.self.key"), h, h)?,
                    value: self.dense(&format!("{p}.attention.self.value"), h, h)?,
                    attention_output: self.dense(&format!("{p}.attention.output.dense"), h, h)?,
                    attention_norm: self.norm(
                        &format!("{p}.attention.output.LayerNorm"),
                        h,
                        c.layer_norm_eps,
                    )?,
                    intermediate: self.dense(
                        &format!("{p}.intermediate.dense"),
                        c.intermediate,
                        h,
                    )?,
                    output: self.dense(&format!("{p}.output.dense"), h, c.intermediate)?,
                    output_norm: self.norm(
                        &format!("{p}.output.LayerNorm"),
                        h,
                        c.layer_norm_eps,
                    )?,
                    n_heads: c.n_heads,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BertEncoder {
            word_embeddings: self.matrix("embeddings.word_embeddings.weight", [c.vocab_size, h])?,
            position_embeddings: self.matrix(
                "embeddings.position_embeddings.weight",
                [c.max_positions, h],
            )?,
            token_type_embeddings: self.matrix(
                "embeddings.token_type_embeddings.weight",
                [c.type_vocab_size, h],
            )?,
            embeddings_norm: self.norm("embeddings.LayerNorm", h, c.layer_norm_eps)?,
            layers,
            pad_token_id: c.pad_token_id,
            roberta_positions: c.roberta_positions,
        })
    }
}

/// A `tokenizer.json` for an encoder: padding off (batches are padded here), truncation to
/// `max_len` tokens (special tokens included).
pub(crate) fn encoder_tokenizer(path: &Path, max_len: usize) -> Result<tokenizers::Tokenizer> {
    if !path.is_file() {
        return Err(EngineError::MissingFile {
            path: path.to_path_buf(),
            what: "tokenizer (tokenizer.json)",
        });
    }
    let err = |e: Box<dyn std::error::Error + Send + Sync>| EngineError::Tokenizer {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut tok = tokenizers::Tokenizer::from_file(path).map_err(err)?;
    tok.with_padding(None);
    tok.with_truncation(Some(tokenizers::TruncationParams {
        max_length: max_len,
        ..Default::default()
    }))
    .map_err(err)?;
    Ok(tok)
}

/// Token ids of each text (special tokens added, truncated as the tokenizer says); a failure
/// names the tokenizer file in `dir`.
pub(crate) fn encode_texts(
    tokenizer: &tokenizers::Tokenizer,
    dir: &Path,
    texts: &[String],
) -> Result<Vec<Vec<u32>>> {
    texts
        .iter()
        .map(|t| {
            tokenizer
                .encode(t.as_str(), true)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| EngineError::Tokenizer {
                    path: dir.join("tokenizer.json"),
                    message: e.to_string(),
                })
        })
        .collect()
}
