//! The one table of parameter names: every tensor of the decoder as a [`WeightId`], with its
//! Hugging Face path (`model.layers.{i}.mlp.down_proj.weight`), its llama.cpp GGUF name
//! (`blk.{i}.ffn_down.weight`) and its shape. Loaders, the module and (later) DINM all address
//! parameters through it.

use std::fmt;

use crate::config::LlamaConfig;

/// A tensor inside one decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerParam {
    /// RMSNorm before attention.
    InputNorm,
    /// Query projection, `[n_heads * head_dim, d_model]`.
    QProj,
    /// Key projection, `[n_kv_heads * head_dim, d_model]`.
    KProj,
    /// Value projection, `[n_kv_heads * head_dim, d_model]`.
    VProj,
    /// Attention output projection, `[d_model, n_heads * head_dim]`.
    OProj,
    /// RMSNorm before the MLP.
    PostAttentionNorm,
    /// SwiGLU gate, `[d_ff, d_model]`.
    GateProj,
    /// SwiGLU up projection, `[d_ff, d_model]`.
    UpProj,
    /// MLP output projection, `[d_model, d_ff]` (the paper's W^V, DINM's edited tensor).
    DownProj,
}

impl LayerParam {
    /// Every layer parameter, in checkpoint order.
    pub const ALL: [LayerParam; 9] = [
        LayerParam::InputNorm,
        LayerParam::QProj,
        LayerParam::KProj,
        LayerParam::VProj,
        LayerParam::OProj,
        LayerParam::PostAttentionNorm,
        LayerParam::GateProj,
        LayerParam::UpProj,
        LayerParam::DownProj,
    ];

    fn hf_suffix(self) -> &'static str {
        match self {
            LayerParam::InputNorm => "input_layernorm.weight",
            LayerParam::QProj => "self_attn.q_proj.weight",
            LayerParam::KProj => "self_attn.k_proj.weight",
            LayerParam::VProj => "self_attn.v_proj.weight",
            LayerParam::OProj => "self_attn.o_proj.weight",
            LayerParam::PostAttentionNorm => "post_attention_layernorm.weight",
            LayerParam::GateProj => "mlp.gate_proj.weight",
            LayerParam::UpProj => "mlp.up_proj.weight",
            LayerParam::DownProj => "mlp.down_proj.weight",
        }
    }

    fn gguf_suffix(self) -> &'static str {
        match self {
            LayerParam::InputNorm => "attn_norm.weight",
            LayerParam::QProj => "attn_q.weight",
            LayerParam::KProj => "attn_k.weight",
            LayerParam::VProj => "attn_v.weight",
            LayerParam::OProj => "attn_output.weight",
            LayerParam::PostAttentionNorm => "ffn_norm.weight",
            LayerParam::GateProj => "ffn_gate.weight",
            LayerParam::UpProj => "ffn_up.weight",
            LayerParam::DownProj => "ffn_down.weight",
        }
    }
}

/// One parameter tensor of a LLaMA-family decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WeightId {
    /// Token embedding, `[vocab, d_model]`.
    Embed,
    /// A tensor of decoder layer `layer`.
    Layer {
        /// 0-based layer index.
        layer: usize,
        /// Which tensor.
        param: LayerParam,
    },
    /// Final RMSNorm.
    FinalNorm,
    /// Untied LM head, `[vocab, d_model]`.
    LmHead,
}

impl WeightId {
    /// Shorthand for a layer parameter.
    pub fn layer(layer: usize, param: LayerParam) -> Self {
        WeightId::Layer { layer, param }
    }

    /// Every parameter the config implies, in checkpoint order (no `LmHead` when tied).
    pub fn all(config: &LlamaConfig) -> Vec<WeightId> {
        let mut ids = vec![WeightId::Embed];
        for layer in 0..config.n_layers {
            ids.extend(
                LayerParam::ALL
                    .iter()
                    .map(|&param| WeightId::Layer { layer, param }),
            );
        }
        ids.push(WeightId::FinalNorm);
        if !config.tie_embeddings {
            ids.push(WeightId::LmHead);
        }
        ids
    }

    /// The Hugging Face transformers path, e.g. `model.layers.3.mlp.down_proj.weight`.
    pub fn hf_name(&self) -> String {
        match self {
            WeightId::Embed => "model.embed_tokens.weight".into(),
            WeightId::FinalNorm => "model.norm.weight".into(),
            WeightId::LmHead => "lm_head.weight".into(),
            WeightId::Layer { layer, param } => {
                format!("model.layers.{layer}.{}", param.hf_suffix())
            }
        }
    }

    /// The llama.cpp GGUF name, e.g. `blk.3.ffn_down.weight`.
    pub fn gguf_name(&self) -> String {
        match self {
            WeightId::Embed => "token_embd.weight".into(),
            WeightId::FinalNorm => "output_norm.weight".into(),
            WeightId::LmHead => "output.weight".into(),
            WeightId::Layer { layer, param } => format!("blk.{layer}.{}", param.gguf_suffix()),
        }
    }

    /// Parses a Hugging Face path back into an id.
    pub fn from_hf_name(name: &str) -> Option<WeightId> {
        match name {
            "model.embed_tokens.weight" => return Some(WeightId::Embed),
            "model.norm.weight" => return Some(WeightId::FinalNorm),
            "lm_head.weight" => return Some(WeightId::LmHead),
            _ => {}
        }
        let rest = name.strip_prefix("model.layers.")?;
        let (index, suffix) = rest.split_once('.')?;
        let layer = index.parse().ok()?;
        let param = LayerParam::ALL
            .into_iter()
            .find(|p| p.hf_suffix() == suffix)?;
        Some(WeightId::Layer { layer, param })
    }

    /// The row-major (PyTorch) shape the config implies.
    pub fn shape(&self, c: &LlamaConfig) -> Vec<usize> {
        let q = c.n_heads * c.head_dim;
        let kv = c.n_kv_heads * c.head_dim;
        match self {
            WeightId::Embed | WeightId::LmHead => vec![c.vocab_size, c.d_model],
            WeightId::FinalNorm => vec![c.d_model],
            WeightId::Layer { param, .. } => match param {
                LayerParam::InputNorm | LayerParam::PostAttentionNorm => vec![c.d_model],
                LayerParam::QProj => vec![q, c.d_model],
                LayerParam::KProj | LayerParam::VProj => vec![kv, c.d_model],
                LayerParam::OProj => vec![c.d_model, q],
                LayerParam::GateProj | LayerParam::UpProj => vec![c.d_ff, c.d_model],
                LayerParam::DownProj => vec![c.d_model, c.d_ff],
            },
        }
    }

    /// True for the RMSNorm weights (initialised to ones, never transposed).
    pub fn is_norm(&self) -> bool {
        matches!(
            self,
            WeightId::FinalNorm
                | WeightId::Layer {
                    param: LayerParam::InputNorm | LayerParam::PostAttentionNorm,
                    ..
                }
        )
    }
}

impl fmt::Display for WeightId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hf_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_names_round_trip() {
        let config = LlamaConfig::tiny();
        let ids = WeightId::all(&config);
        assert_eq!(ids.len(), 1 + 9 * config.n_layers + 2);
        for id in ids {
            assert_eq!(WeightId::from_hf_name(&id.hf_name()), Some(id), "{id}");
        }
        assert_eq!(
            WeightId::from_hf_name("model.layers.x.mlp.down_proj.weight"),
            None
        );
        assert_eq!(
            WeightId::from_hf_name("model.layers.0.mlp.down_proj.bias"),
            None
        );
    }

    #[test]
    fn down_proj_names_and_shape() {
        let id = WeightId::layer(12, LayerParam::DownProj);
        assert_eq!(id.hf_name(), "model.layers.12.mlp.down_proj.weight");
        assert_eq!(id.gguf_name(), "blk.12.ffn_down.weight");
        assert_eq!(id.shape(&LlamaConfig::smollm2_135m()), vec![576, 1536]);
    }

    #[test]
    fn tied_models_have_no_lm_head() {
        let ids = WeightId::all(&LlamaConfig::smollm2_135m());
        assert!(!ids.contains(&WeightId::LmHead));
        assert_eq!(ids.len(), 1 + 9 * 30 + 1);
    }
}
