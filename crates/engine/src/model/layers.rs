//! The building blocks of a LLaMA decoder layer, with Hugging Face weight layouts: every
//! projection stores its weight as PyTorch does, `[out_features, in_features]`, so that a tensor
//! read by name from a checkpoint (or written back as a DINM delta) needs no transposition.

use burn::module::{Module, Param};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Int, Tensor};

use super::rope::Rotary;
use super::{decode, few_rows, flex, fused, many_rows};

/// A bias-free linear map holding its weight in PyTorch layout.
#[derive(Module, Debug)]
pub struct HfLinear<B: Backend> {
    /// Weight, `[out_features, in_features]`.
    pub weight: Param<Tensor<B, 2>>,
}

impl<B: Backend> HfLinear<B> {
    /// Wraps a `[out, in]` weight.
    pub fn new(weight: Tensor<B, 2>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
        }
    }

    /// Wraps a weight as it is: unlike [`HfLinear::new`] it does not mark it as trained, so it
    /// may be a computed tensor on an autodiff graph (LoRA's `W + s·BA`).
    pub fn from_value(weight: Tensor<B, 2>) -> Self {
        Self {
            weight: Param::initialized(burn::module::ParamId::new(), weight),
        }
    }

    /// `x · Wᵀ`.
    ///
    /// # Shapes
    /// - x: `[..., in_features]`
    /// - output: `[..., out_features]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        project(self.weight.val(), x)
    }
}

/// `x · Wᵀ` for a weight in PyTorch layout `[out, in]`, kept in f32 or half precision (see
/// [`WeightDtype`](crate::WeightDtype)). The input is flattened to 2-D first: on
/// the CPU backend a batched (3-D) matmul against the transposed weight view is up to 30× slower
/// for single-token decoding, while the 2-D product reads the transposed view at full speed and
/// returns a contiguous result (which keeps the element-wise ops after it on their fast paths).
///
/// # Shapes
/// - weight: `[out, in]`
/// - x: `[..., in]`
/// - output: `[..., out]`
pub fn project<B: Backend, const D: usize>(weight: Tensor<B, 2>, x: Tensor<B, D>) -> Tensor<B, D> {
    let dims = x.dims();
    let rows: usize = dims[..D - 1].iter().product();
    let [out, _] = weight.dims();
    let flat: Tensor<B, 2> = x.reshape([rows, dims[D - 1]]);
    let mut shape = dims;
    shape[D - 1] = out;
    // A decoding step (`[rows, 1, in]`) takes the few-rows product whatever its rows.
    let step = D == 3 && dims[1] == 1;
    if (rows <= few_rows::MAX_ROWS || step)
        && let Some(y) = few_rows::project(&weight, &flat)
    {
        return y.reshape(shape);
    }
    if let Some(y) = many_rows::project(&weight, &flat) {
        return y.reshape(shape);
    }
    // A weight kept in half precision is widened for the product (activations stay f32).
    let weight = if weight.dtype() == flat.dtype() {
        weight
    } else {
        weight.cast(flat.dtype())
    };
    flat.matmul(weight.transpose()).reshape(shape)
}

/// Root-mean-square normalisation as in `LlamaRMSNorm`: computed in f32,
/// `x / sqrt(mean(x²) + eps) * weight`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Per-channel gain, `[d_model]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square before the square root.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Wraps a gain vector.
    pub fn new(weight: Tensor<B, 1>, eps: f64) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            eps,
        }
    }

    /// Normalises over the last dimension.
    ///
    /// # Shapes
    /// - x: `[..., d_model]`
    /// - output: `[..., d_model]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let x = x.cast(DType::F32);
        let inv_rms = (x.clone().square().mean_dim(D - 1) + self.eps)
            .sqrt()
            .recip();
        (x * inv_rms).cast(dtype) * self.weight.val().unsqueeze()
    }
}

/// SwiGLU MLP: `down_proj(silu(gate_proj(x)) * up_proj(x))`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `[d_ff, d_model]`.
    pub gate_proj: HfLinear<B>,
    /// `[d_ff, d_model]`.
    pub up_proj: HfLinear<B>,
    /// `[d_model, d_ff]`: the paper's W^V, the tensor DINM edits.
    pub down_proj: HfLinear<B>,
}

impl<B: Backend> Mlp<B> {
    /// The activation entering `down_proj` (TransformerLens `blocks.{L}.mlp.hook_post`).
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - output: `[batch, seq, d_ff]`
    pub fn activation(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = self.gate_proj.forward(x.clone());
        let up = self.up_proj.forward(x);
        fused::swiglu(&gate, &up).unwrap_or_else(|| silu(gate) * up)
    }

    /// The MLP output.
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - output: `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.down_proj.forward(self.activation(x))
    }
}

/// Cached keys and values of one layer, already rotated. The buffers may hold room for more
/// positions than are cached (decoding reserves its steps' room once, so that a step writes its
/// key and value in place instead of copying the whole cache).
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    /// `[batch, n_kv_heads, capacity, head_dim]`; positions `0..len` are cached.
    key: Tensor<B, 4>,
    /// `[batch, n_kv_heads, capacity, head_dim]`; positions `0..len` are cached.
    value: Tensor<B, 4>,
    /// Cached positions.
    len: usize,
}

impl<B: Backend> LayerCache<B> {
    /// A cache holding exactly `key` and `value` (`[batch, n_kv_heads, len, head_dim]`).
    pub fn new(key: Tensor<B, 4>, value: Tensor<B, 4>) -> Self {
        let len = key.dims()[2];
        Self { key, value, len }
    }

    /// Buffers of which the first `len` positions are cached and the rest is room.
    pub(super) fn with_room(key: Tensor<B, 4>, value: Tensor<B, 4>, len: usize) -> Self {
        debug_assert!(len <= key.dims()[2]);
        Self { key, value, len }
    }

    /// Cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the buffers have room for.
    pub fn capacity(&self) -> usize {
        self.key.dims()[2]
    }

    /// The cached keys, `[batch, n_kv_heads, len, head_dim]`.
    pub fn keys(&self) -> Tensor<B, 4> {
        cached(&self.key, self.len)
    }

    /// The cached values, `[batch, n_kv_heads, len, head_dim]`.
    pub fn values(&self) -> Tensor<B, 4> {
        cached(&self.value, self.len)
    }

    /// Memory the buffers take, in bytes (room included).
    pub fn bytes(&self) -> usize {
        [&self.key, &self.value]
            .iter()
            .map(|t| t.shape().num_elements() * t.dtype().size())
            .sum()
    }

    /// The first `len` positions (all of them when fewer are cached), sharing the buffers.
    pub fn prefix(&self, len: usize) -> Self {
        let keep = len.min(self.len);
        Self::new(cached(&self.key, keep), cached(&self.value, keep))
    }

    /// The cache followed by `key` and `value` (`[batch, n_kv_heads, new, head_dim]`): written
    /// into the buffers' room when they have it (in place on the CPU backend unless another
    /// cache shares them), concatenated otherwise.
    pub fn append(self, key: Tensor<B, 4>, value: Tensor<B, 4>) -> Self {
        let new = key.dims()[2];
        if self.capacity() < self.len + new {
            return Self::new(
                Tensor::cat(vec![self.keys(), key], 2),
                Tensor::cat(vec![self.values(), value], 2),
            );
        }
        Self {
            key: write_at(self.key, self.len, key),
            value: write_at(self.value, self.len, value),
            len: self.len + new,
        }
    }
}

/// The first `len` positions of a `[batch, heads, capacity, dim]` buffer.
fn cached<B: Backend>(buffer: &Tensor<B, 4>, len: usize) -> Tensor<B, 4> {
    if buffer.dims()[2] == len {
        buffer.clone()
    } else {
        buffer.clone().narrow(2, 0, len)
    }
}

/// `buffer` with positions `at..at + new` replaced by `values` (`[batch, heads, new, dim]`).
fn write_at<B: Backend>(buffer: Tensor<B, 4>, at: usize, values: Tensor<B, 4>) -> Tensor<B, 4> {
    let [batch, heads, capacity, dim] = buffer.dims();
    let new = values.dims()[2];
    if let Some(source) = flex::contiguous_f32(&values)
        && let Some(source) = source.as_slice::<f32>()
    {
        let written = flex::write_in_place(buffer, |dst| {
            for (block, src) in source.chunks_exact(new * dim).enumerate() {
                let start = (block * capacity + at) * dim;
                dst[start..start + new * dim].copy_from_slice(src);
            }
        });
        match written {
            Ok(buffer) => return buffer,
            Err(buffer) => {
                return buffer.slice_assign([0..batch, 0..heads, at..at + new, 0..dim], values);
            }
        }
    }
    buffer.slice_assign([0..batch, 0..heads, at..at + new, 0..dim], values)
}

/// Grouped-query self-attention with rotary position embeddings.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `[n_heads * head_dim, d_model]`.
    pub q_proj: HfLinear<B>,
    /// `[n_kv_heads * head_dim, d_model]`.
    pub k_proj: HfLinear<B>,
    /// `[n_kv_heads * head_dim, d_model]`.
    pub v_proj: HfLinear<B>,
    /// `[d_model, n_heads * head_dim]`.
    pub o_proj: HfLinear<B>,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// Causal attention over the cached keys/values followed by the new ones.
    ///
    /// `pad_bias` is an additive mask over key positions (0 for real tokens, the most negative
    /// finite float for padding), covering the cache and the new tokens.
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - pad_bias: `[batch, 1, 1, cached_len + seq]`
    /// - output: `[batch, seq, d_model]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rotary: &Rotary<B>,
        pad_bias: Option<&Tensor<B, 4>>,
        cache: Option<&mut Option<LayerCache<B>>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        // [batch, seq, heads, head_dim], rotated while contiguous, then [batch, heads, seq, dim].
        let heads = |t: Tensor<B, 3>, n: usize| t.reshape([batch, seq, n, self.head_dim]);
        let q = rotary
            .apply(heads(self.q_proj.forward(x.clone()), self.n_heads))
            .swap_dims(1, 2);
        let mut k = rotary
            .apply(heads(self.k_proj.forward(x.clone()), self.n_kv_heads))
            .swap_dims(1, 2);
        let mut v = heads(self.v_proj.forward(x), self.n_kv_heads).swap_dims(1, 2);

        let groups = self.n_heads / self.n_kv_heads;
        let mut stepped = None;
        if let Some(slot) = cache {
            let layer = match slot.take() {
                Some(past) => past.append(k, v),
                None => LayerCache::new(k, v),
            };
            // One new token over the cache (decoding): attended where the cache keeps it.
            if seq == 1 {
                stepped =
                    decode::attention(&q, &layer.key, &layer.value, layer.len, pad_bias, groups);
            }
            (k, v) = (layer.keys(), layer.values());
            *slot = Some(layer);
        }

        let kv_len = k.dims()[2];
        let out = if let Some(out) = stepped {
            out
        } else if seq == 1 && groups > 1 {
            // One new token (decoding): stack each key/value head's query group along the query
            // axis instead of copying the whole cache `groups` times. Causality is trivial here:
            // the new token may see every cached key.
            let q = q.reshape([batch, self.n_kv_heads, groups, self.head_dim]);
            let bias = pad_bias.map(|b| b.clone().expand([batch, self.n_kv_heads, groups, kv_len]));
            let options = AttentionModuleOptions {
                scale: None,
                softcap: None,
                is_causal: false,
            };
            attention(q, k, v, None, bias, options).reshape([batch, self.n_heads, 1, self.head_dim])
        } else {
            grouped_causal_attention(q, k, v, pad_bias, groups)
        };
        let out = out
            .swap_dims(1, 2)
            .reshape([batch, seq, self.n_heads * self.head_dim]);
        self.o_proj.forward(out)
    }
}

/// Query rows per block of [`grouped_causal_attention`]: large enough for efficient matrix
/// products, small enough that a long prompt's later blocks skip many keys.
const QUERY_BLOCK: usize = 256;

/// Causal attention of `seq` new queries over `kv_len` keys, the last `seq` of which are the
/// queries' own positions (a cache may hold earlier ones). Each key/value head attends for its
/// whole query group at once (the group's queries stacked as rows), so keys and values are never
/// copied per query head; and queries go in blocks of [`QUERY_BLOCK`] rows, each reading only
/// the keys up to its last position, so most of the masked upper triangle of a long prompt is
/// never computed. The products are the backend's; on the CPU backend outside autodiff the
/// scale, masks and softmax are one pass per row over the keys it sees ([`fused::causal_softmax`]).
/// Future keys score -inf and the padding bias (the most negative finite float) is added after,
/// as in burn's fused attention. No row is ever fully -inf (a query always sees its own
/// position), so the plain softmax needs none of the guards a fully masked row would. A query
/// that sees only padding (the leading pad positions of a left-padded row) gets a zero output,
/// as transformers' default SDPA attention gives it on current PyTorch; other rows never attend
/// to padding, so only the padding positions' own states depend on this.
///
/// # Shapes
/// - q: `[batch, n_kv_heads * groups, seq, head_dim]`
/// - k, v: `[batch, n_kv_heads, kv_len, head_dim]`
/// - pad_bias: `[batch, 1, 1, kv_len]`
/// - output: `[batch, n_kv_heads * groups, seq, head_dim]`
fn grouped_causal_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    pad_bias: Option<&Tensor<B, 4>>,
    groups: usize,
) -> Tensor<B, 4> {
    let [batch, n_heads, seq, dim] = q.dims();
    let [_, n_kv, kv_len, _] = k.dims();
    let past = kv_len - seq;
    let device = q.device();
    let scale = 1.0 / (dim as f64).sqrt();
    let q = q.reshape([batch, n_kv, groups, seq, dim]);
    let mut blocks = Vec::with_capacity(seq.div_ceil(QUERY_BLOCK));
    for start in (0..seq).step_by(QUERY_BLOCK) {
        let len = QUERY_BLOCK.min(seq - start);
        let visible = past + start + len;
        let rows = groups * len;
        let q_block = q
            .clone()
            .narrow(3, start, len)
            .reshape([batch, n_kv, rows, dim]);
        let scores = q_block.matmul(k.clone().narrow(2, 0, visible).swap_dims(2, 3));
        let values = v.clone().narrow(2, 0, visible);
        if let Some(p) = fused::causal_softmax(&scores, scale as f32, past + start, len, pad_bias) {
            blocks.push(p.matmul(values).reshape([batch, n_kv, groups, len, dim]));
            continue;
        }
        let scores = scores.mul_scalar(scale);
        // Row `g * len + r` is the query at position `past + start + r`; it sees keys up to it.
        let position = Tensor::<B, 1, Int>::arange(
            (past + start) as i64..(past + start + len) as i64,
            &device,
        )
        .reshape([1, len])
        .expand([groups, len])
        .reshape([rows, 1])
        .expand([rows, visible]);
        let key = Tensor::<B, 1, Int>::arange(0..visible as i64, &device)
            .reshape([1, visible])
            .expand([rows, visible]);
        let future = key
            .greater(position)
            .reshape([1, 1, rows, visible])
            .expand([batch, n_kv, rows, visible]);
        let mut scores = scores.mask_fill(future, f32::NEG_INFINITY);
        if let Some(bias) = pad_bias {
            scores = scores
                + bias
                    .clone()
                    .narrow(3, 0, visible)
                    .expand([batch, n_kv, rows, visible]);
        }
        // Rows whose every visible key is padding: the best score is the padding bias itself.
        let sees_nothing = pad_bias.map(|_| scores.clone().max_dim(3).lower_elem(f32::MIN / 2.0));
        let mut out = softmax(scores, 3).matmul(values);
        if let Some(rows_masked) = sees_nothing {
            out = out.mask_fill(rows_masked.expand([batch, n_kv, rows, dim]), 0.0);
        }
        blocks.push(out.reshape([batch, n_kv, groups, len, dim]));
    }
    Tensor::cat(blocks, 3).reshape([batch, n_heads, seq, dim])
}

/// One pre-norm decoder layer.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// RMSNorm before attention.
    pub input_layernorm: RmsNorm<B>,
    /// Self-attention.
    pub self_attn: Attention<B>,
    /// RMSNorm before the MLP.
    pub post_attention_layernorm: RmsNorm<B>,
    /// SwiGLU MLP.
    pub mlp: Mlp<B>,
}

impl<B: Backend> DecoderLayer<B> {
    /// `h = x + attn(norm(x)); out = h + mlp(norm(h))`. When `tap_mlp` is set, also returns the
    /// activation entering `down_proj`.
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - output: `[batch, seq, d_model]`, and `[batch, seq, d_ff]` when tapped
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rotary: &Rotary<B>,
        pad_bias: Option<&Tensor<B, 4>>,
        cache: Option<&mut Option<LayerCache<B>>>,
        tap_mlp: bool,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 3>>) {
        let h = self.attend(x, rotary, pad_bias, cache);
        let act = self.mlp_activation(h.clone());
        let out = h + self.mlp.down_proj.forward(act.clone());
        (out, tap_mlp.then_some(act))
    }

    /// The residual stream after attention (TransformerLens `hook_resid_mid`): `x + attn(norm(x))`.
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - output: `[batch, seq, d_model]`
    pub fn attend(
        &self,
        x: Tensor<B, 3>,
        rotary: &Rotary<B>,
        pad_bias: Option<&Tensor<B, 4>>,
        cache: Option<&mut Option<LayerCache<B>>>,
    ) -> Tensor<B, 3> {
        x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rotary, pad_bias, cache)
    }

    /// The activation entering `down_proj` for a residual after attention.
    ///
    /// # Shapes
    /// - resid_mid: `[batch, seq, d_model]`
    /// - output: `[batch, seq, d_ff]`
    pub fn mlp_activation(&self, resid_mid: Tensor<B, 3>) -> Tensor<B, 3> {
        self.mlp
            .activation(self.post_attention_layernorm.forward(resid_mid))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};

    use super::*;
    use crate::TestBackend;

    type B = TestBackend;

    /// Burn's fused causal attention over key/value heads copied once per query head: what
    /// `grouped_causal_attention` replaced.
    fn reference(
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        pad_bias: Option<&Tensor<B, 4>>,
        groups: usize,
    ) -> Tensor<B, 4> {
        let [batch, n_heads, seq, _] = q.dims();
        let kv_len = k.dims()[2];
        let repeat = |x: Tensor<B, 4>| {
            let [b, h, len, d] = x.dims();
            x.unsqueeze_dim::<5>(2)
                .expand([b, h, groups, len, d])
                .reshape([b, h * groups, len, d])
        };
        let bias = pad_bias.map(|b| b.clone().expand([batch, n_heads, seq, kv_len]));
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: true,
        };
        attention(q, repeat(k), repeat(v), None, bias, options)
    }

    /// Several query blocks, keys cached before the new queries, query groups of three and a
    /// left-padded row: equal to the fused attention over copied heads.
    #[test]
    fn grouped_attention_equals_fused_attention_over_copied_heads() {
        let device = Default::default();
        let (batch, n_kv, groups, dim) = (2, 2, 3, 16);
        for (past, seq) in [
            (0, 2 * QUERY_BLOCK + 37),
            (11, QUERY_BLOCK + 5),
            (0, 1),
            (7, 1),
        ] {
            let kv_len = past + seq;
            let normal = Distribution::Normal(0.0, 1.0);
            let q = Tensor::<B, 4>::random([batch, n_kv * groups, seq, dim], normal, &device);
            let k = Tensor::<B, 4>::random([batch, n_kv, kv_len, dim], normal, &device);
            let v = Tensor::<B, 4>::random([batch, n_kv, kv_len, dim], normal, &device);
            // Row 1 has three padding positions at the front.
            let mut bias = vec![0f32; batch * kv_len];
            for b in bias[kv_len..kv_len + 3.min(kv_len - 1)].iter_mut() {
                *b = f32::MIN;
            }
            let bias = Tensor::<B, 4>::from_data(
                burn::tensor::TensorData::new(bias, [batch, 1, 1, kv_len]),
                &device,
            );
            for pad in [None, Some(&bias)] {
                let ours = grouped_causal_attention(q.clone(), k.clone(), v.clone(), pad, groups);
                let theirs = reference(q.clone(), k.clone(), v.clone(), pad, groups);
                assert_eq!(ours.dims(), theirs.dims());
                let values = |t: Tensor<B, 4>| t.into_data().to_vec::<f32>().unwrap();
                let (ours, mut theirs) = (values(ours), values(theirs));
                let case = format!("past {past}, seq {seq}, padded {}", pad.is_some());
                // Queries of row 1 that see only its padding (positions 0..3): zero here (as
                // transformers' SDPA), spread over the padding by the fused attention.
                let heads = n_kv * groups;
                let padded = 3.min(kv_len - 1);
                for h in 0..heads {
                    for s in (0..seq).filter(|&s| pad.is_some() && past + s < padded) {
                        let at = ((heads + h) * seq + s) * dim;
                        assert!(ours[at..at + dim].iter().all(|&x| x == 0.0), "{case}");
                        theirs[at..at + dim].fill(0.0);
                    }
                }
                assert!(ours.iter().all(|x| x.is_finite()), "{case}: not finite");
                let diff = ours
                    .iter()
                    .zip(&theirs)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(diff < 1e-4, "{case}: max difference {diff}");
            }
        }
    }
}
