//! A LLaMA/Mistral-family decoder in burn, generic over the backend: token embedding, pre-norm
//! decoder layers (RMSNorm, rotary GQA attention, SwiGLU MLP), final norm, tied or untied LM
//! head. Follows transformers' `modeling_llama.py` numerically (RMSNorm in f32, HF
//! `rotate_half` rotary tables, HF `output_hidden_states` semantics) so that parity tests against
//! PyTorch hold to 1e-3.

mod batch;
mod decode;
mod few_rows;
mod flex;
mod fused;
mod layers;
mod many_rows;
mod rope;

use burn::module::{Module, Param};
use burn::tensor::DType;
use burn::tensor::backend::Backend;
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor, TensorData};

pub use batch::{Batch, KvCache, PaddingSide};
pub use layers::{Attention, DecoderLayer, HfLinear, LayerCache, Mlp, RmsNorm, project};
pub use rope::{Rotary, RotarySpec};

use crate::config::LlamaConfig;
use crate::error::{EngineError, Result};
use crate::names::{LayerParam, WeightId};
use crate::weights::RawTensor;
pub use crate::weights::{ParamSource, RandomInit, WeightDtype, WithDtype};

/// The decoder.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// Token embedding, `[vocab, d_model]` (`model.embed_tokens.weight`).
    pub embed_tokens: Param<Tensor<B, 2>>,
    /// The decoder layers (`model.layers.{i}`).
    pub layers: Vec<DecoderLayer<B>>,
    /// Final RMSNorm (`model.norm`).
    pub norm: RmsNorm<B>,
    /// Untied LM head (`lm_head`); `None` when tied to the embedding.
    pub lm_head: Option<HfLinear<B>>,
    /// Width of an attention head.
    pub head_dim: usize,
    /// Rotary base.
    pub rope_theta: f64,
    /// Linear rotary scaling factor.
    pub rope_linear_factor: f64,
}

/// Which logits a forward pass computes (the 49k-wide head dominates short prompts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Every position.
    All,
    /// The last position only (with left padding: every row's last real token).
    Last,
    /// None (hidden states only).
    Skip,
}

/// What to compute and capture in a forward pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardOptions {
    /// Which logits to compute.
    pub logits: Logits,
    /// Capture hidden states with transformers' `output_hidden_states` semantics.
    pub hidden_states: bool,
    /// Capture the activation entering `down_proj` at this layer.
    pub mlp_activation: Option<usize>,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        Self {
            logits: Logits::All,
            hidden_states: false,
            mlp_activation: None,
        }
    }
}

/// What a forward pass returns.
#[derive(Debug)]
pub struct ForwardOutput<B: Backend> {
    /// `[batch, seq or 1, vocab]` unless [`Logits::Skip`].
    pub logits: Option<Tensor<B, 3>>,
    /// `n_layers + 1` tensors `[batch, seq, d_model]`: the embeddings, the output of layers
    /// `0..n_layers-1`, and the final-normed output of the last layer (TransformerLens
    /// `blocks.{L}.hook_resid_post` for L < n_layers - 1). Empty unless requested.
    pub hidden_states: Vec<Tensor<B, 3>>,
    /// `[batch, seq, d_ff]`: the input of `down_proj` at the requested layer
    /// (`blocks.{L}.mlp.hook_post`).
    pub mlp_activation: Option<Tensor<B, 3>>,
}

impl<B: Backend> Llama<B> {
    /// Number of decoder layers.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Runs the decoder on a batch, optionally extending a key/value cache.
    ///
    /// # Shapes
    /// - batch.tokens: `[batch, seq]`; with a cache, `batch.key_mask` covers the cached and the
    ///   new positions
    /// - output: see [`ForwardOutput`]
    pub fn forward(
        &self,
        batch: &Batch<B>,
        mut cache: Option<&mut KvCache<B>>,
        options: &ForwardOptions,
    ) -> ForwardOutput<B> {
        let (rotary, pad_bias) = self.attention_context(batch);
        let mut x = self.embed(batch);
        let mut hidden_states = Vec::new();
        let mut mlp_activation = None;
        for (index, layer) in self.layers.iter().enumerate() {
            if options.hidden_states {
                hidden_states.push(x.clone());
            }
            let slot = cache.as_deref_mut().map(|c| c.slot(index));
            let tap = options.mlp_activation == Some(index);
            let (out, act) = layer.forward(x, &rotary, pad_bias.as_ref(), slot, tap);
            x = out;
            if act.is_some() {
                mlp_activation = act;
            }
        }
        let x = self.norm.forward(x);
        if options.hidden_states {
            hidden_states.push(x.clone());
        }
        let logits = match options.logits {
            Logits::Skip => None,
            Logits::All => Some(self.head(x)),
            Logits::Last => {
                let [_, seq, _] = x.dims();
                Some(self.head(x.narrow(1, seq - 1, 1)))
            }
        };
        ForwardOutput {
            logits,
            hidden_states,
            mlp_activation,
        }
    }

    /// Rotary tables and the padding bias of a batch.
    fn attention_context(&self, batch: &Batch<B>) -> (Rotary<B>, Option<Tensor<B, 4>>) {
        let device = batch.tokens.device();
        let spec = RotarySpec {
            head_dim: self.head_dim,
            theta: self.rope_theta,
            linear_factor: self.rope_linear_factor,
        };
        let heads = self
            .layers
            .first()
            .map_or([1, 1], |l| [l.self_attn.n_heads, l.self_attn.n_kv_heads]);
        (
            spec.tables::<B>(&batch.positions, &heads, &device),
            batch.pad_bias(&device),
        )
    }

    /// Runs the batch up to the input of `down_proj` at `layer`: the residual after that layer's
    /// attention and the activation entering its `down_proj`. Neither depends on that `down_proj`,
    /// which is what lets an edit of it reuse them at every step (docs/method.md §The edit).
    ///
    /// # Shapes
    /// - output: `[batch, seq, d_model]` and `[batch, seq, d_ff]`
    pub fn split_at_down_proj(
        &self,
        batch: &Batch<B>,
        layer: usize,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (rotary, pad_bias) = self.attention_context(batch);
        let mut x = self.embed(batch);
        for l in &self.layers[..layer] {
            x = l.forward(x, &rotary, pad_bias.as_ref(), None, false).0;
        }
        let resid_mid = self.layers[layer].attend(x, &rotary, pad_bias.as_ref(), None);
        let activation = self.layers[layer].mlp_activation(resid_mid.clone());
        (resid_mid, activation)
    }

    /// Finishes a forward pass from [`Llama::split_at_down_proj`] with the given `down_proj`
    /// weight at `layer`, returning the logits of the positions in `positions`.
    ///
    /// # Shapes
    /// - resid_mid: `[batch, seq, d_model]`; activation: `[batch, seq, d_ff]`
    /// - down_proj: `[d_model, d_ff]`
    /// - output: `[batch, positions.len(), vocab]`
    pub fn logits_from_down_proj(
        &self,
        resid_mid: Tensor<B, 3>,
        activation: Tensor<B, 3>,
        down_proj: Tensor<B, 2>,
        layer: usize,
        batch: &Batch<B>,
        positions: std::ops::Range<usize>,
    ) -> Tensor<B, 3> {
        let (rotary, pad_bias) = self.attention_context(batch);
        let mut x = resid_mid + project(down_proj, activation);
        for l in &self.layers[layer + 1..] {
            x = l.forward(x, &rotary, pad_bias.as_ref(), None, false).0;
        }
        let x = x.narrow(1, positions.start, positions.len());
        self.head(self.norm.forward(x))
    }

    /// A copy whose `down_proj` at `layer` is replaced (every other tensor is shared).
    pub fn with_down_proj(&self, layer: usize, weight: Tensor<B, 2>) -> Self {
        let mut model = self.clone();
        model.layers[layer].mlp.down_proj = HfLinear::new(weight);
        model
    }

    /// A copy with one projection's weight replaced as it is (`id` must name a layer's
    /// projection; the tensor's gradient tracking is left alone).
    pub fn with_matrix(&self, id: WeightId, weight: Tensor<B, 2>) -> Self {
        let mut model = self.clone();
        let WeightId::Layer { layer, param } = id else {
            panic!("with_matrix: {id} is not a layer projection");
        };
        let l = &mut model.layers[layer];
        let slot = match param {
            LayerParam::QProj => &mut l.self_attn.q_proj,
            LayerParam::KProj => &mut l.self_attn.k_proj,
            LayerParam::VProj => &mut l.self_attn.v_proj,
            LayerParam::OProj => &mut l.self_attn.o_proj,
            LayerParam::GateProj => &mut l.mlp.gate_proj,
            LayerParam::UpProj => &mut l.mlp.up_proj,
            LayerParam::DownProj => &mut l.mlp.down_proj,
            LayerParam::InputNorm | LayerParam::PostAttentionNorm => {
                panic!("with_matrix: {id} is a norm")
            }
        };
        *slot = HfLinear::from_value(weight);
        model
    }

    /// Logits of every position of a batch (no cache, nothing captured).
    ///
    /// # Shapes
    /// - output: `[batch, seq, vocab]`
    pub fn logits(&self, batch: &Batch<B>) -> Tensor<B, 3> {
        self.forward(batch, None, &ForwardOptions::default())
            .logits
            .expect("Logits::All computes logits")
    }

    /// The token embeddings of `batch`, in f32 whatever the dtype the table is kept in.
    fn embed(&self, batch: &Batch<B>) -> Tensor<B, 3> {
        widened(embedding(self.embed_tokens.val(), batch.tokens.clone()))
    }

    /// The LM head applied to final-normed states.
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - output: `[batch, seq, vocab]`
    pub fn head(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => head.forward(x),
            None => project(self.embed_tokens.val(), x),
        }
    }

    /// [`Llama::matrix`] widened to f32 when the model keeps its matrices in half precision:
    /// what an edit or an adapter adds its f32 change to (the changed weight is then kept in f32).
    pub fn matrix_f32(&self, id: WeightId) -> Option<Tensor<B, 2>> {
        self.matrix(id).map(widened)
    }

    /// A 2-D weight by name (`None` for norms, and for `LmHead` when tied).
    pub fn matrix(&self, id: WeightId) -> Option<Tensor<B, 2>> {
        match id {
            WeightId::Embed => Some(self.embed_tokens.val()),
            WeightId::LmHead => self.lm_head.as_ref().map(|h| h.weight.val()),
            WeightId::FinalNorm => None,
            WeightId::Layer { layer, param } => {
                let l = self.layers.get(layer)?;
                let linear = match param {
                    LayerParam::QProj => &l.self_attn.q_proj,
                    LayerParam::KProj => &l.self_attn.k_proj,
                    LayerParam::VProj => &l.self_attn.v_proj,
                    LayerParam::OProj => &l.self_attn.o_proj,
                    LayerParam::GateProj => &l.mlp.gate_proj,
                    LayerParam::UpProj => &l.mlp.up_proj,
                    LayerParam::DownProj => &l.mlp.down_proj,
                    LayerParam::InputNorm | LayerParam::PostAttentionNorm => return None,
                };
                Some(linear.weight.val())
            }
        }
    }

    /// A norm weight by name (`None` for matrices).
    pub fn vector(&self, id: WeightId) -> Option<Tensor<B, 1>> {
        match id {
            WeightId::FinalNorm => Some(self.norm.weight.val()),
            WeightId::Layer {
                layer,
                param: LayerParam::InputNorm,
            } => Some(self.layers.get(layer)?.input_layernorm.weight.val()),
            WeightId::Layer {
                layer,
                param: LayerParam::PostAttentionNorm,
            } => Some(
                self.layers
                    .get(layer)?
                    .post_attention_layernorm
                    .weight
                    .val(),
            ),
            _ => None,
        }
    }
}

impl<B: Backend> Llama<B> {
    /// A weight copied to the host in HF layout, for export (`None` for a tied `LmHead`).
    pub fn export(&self, id: WeightId) -> Option<RawTensor> {
        let (shape, data) = match self.matrix(id) {
            Some(m) => (m.dims().to_vec(), m.into_data()),
            None => {
                let v = self.vector(id)?;
                (v.dims().to_vec(), v.into_data())
            }
        };
        let data = data.convert::<f32>().to_vec::<f32>().expect("f32 data");
        Some(RawTensor { shape, data })
    }
}

impl LlamaConfig {
    /// A randomly initialised model (seed 0, std 0.1), identical on every backend.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Llama<B> {
        self.init_seeded(0, device)
    }

    /// A randomly initialised model with the given seed.
    pub fn init_seeded<B: Backend>(&self, seed: u64, device: &B::Device) -> Llama<B> {
        self.build(&mut RandomInit::new(seed, 0.1, device))
            .expect("random init cannot fail")
    }

    /// Builds the model, asking `source` for every tensor of [`WeightId::all`].
    pub fn build<B: Backend>(&self, source: &mut impl ParamSource<B>) -> Result<Llama<B>> {
        let shape2 = |id: WeightId| -> [usize; 2] {
            let s = id.shape(self);
            [s[0], s[1]]
        };
        let matrix = |source: &mut dyn ParamSource<B>, id: WeightId| {
            source.matrix(id, shape2(id)).map(HfLinear::new)
        };
        let embed = source.matrix(WeightId::Embed, shape2(WeightId::Embed))?;
        let mut layers = Vec::with_capacity(self.n_layers);
        for layer in 0..self.n_layers {
            let id = |param| WeightId::layer(layer, param);
            let input_norm = source.vector(id(LayerParam::InputNorm), self.d_model)?;
            let self_attn = Attention {
                q_proj: matrix(source, id(LayerParam::QProj))?,
                k_proj: matrix(source, id(LayerParam::KProj))?,
                v_proj: matrix(source, id(LayerParam::VProj))?,
                o_proj: matrix(source, id(LayerParam::OProj))?,
                n_heads: self.n_heads,
                n_kv_heads: self.n_kv_heads,
                head_dim: self.head_dim,
            };
            let post_norm = source.vector(id(LayerParam::PostAttentionNorm), self.d_model)?;
            let mlp = Mlp {
                gate_proj: matrix(source, id(LayerParam::GateProj))?,
                up_proj: matrix(source, id(LayerParam::UpProj))?,
                down_proj: matrix(source, id(LayerParam::DownProj))?,
            };
            layers.push(DecoderLayer {
                input_layernorm: RmsNorm::new(input_norm, self.rms_norm_eps),
                self_attn,
                post_attention_layernorm: RmsNorm::new(post_norm, self.rms_norm_eps),
                mlp,
            });
        }
        let norm = RmsNorm::new(
            source.vector(WeightId::FinalNorm, self.d_model)?,
            self.rms_norm_eps,
        );
        let lm_head = if self.tie_embeddings {
            None
        } else {
            Some(matrix(source, WeightId::LmHead)?)
        };
        Ok(Llama {
            embed_tokens: Param::from_tensor(embed),
            layers,
            norm,
            lm_head,
            head_dim: self.head_dim,
            rope_theta: self.rope_theta,
            rope_linear_factor: self.rope_linear_factor,
        })
    }
}

/// `t` in f32: as it is when it already is, widened from half precision otherwise.
fn widened<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(DType::F32)
    }
}

/// Checks a token id against the vocabulary before it reaches the embedding.
pub fn check_tokens(tokens: &[u32], vocab_size: usize) -> Result<()> {
    if let Some(bad) = tokens.iter().find(|&&t| t as usize >= vocab_size) {
        return Err(EngineError::InvalidInput(format!(
            "token id {bad} is outside the vocabulary (size {vocab_size})"
        )));
    }
    Ok(())
}

/// Integer tensor helper used by batches and tests.
pub(crate) fn int_tensor<B: Backend>(
    values: Vec<i64>,
    shape: [usize; 2],
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

#[cfg(test)]
mod tests;
