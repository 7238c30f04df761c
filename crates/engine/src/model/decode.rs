//! Attention of a decoding step on the CPU backend: one new query per row and head over the
//! keys and values cached so far, read where the cache keeps them. Through burn's attention each
//! step first copied the whole cache into a contiguous tensor (the cache itself grew by one
//! concatenation per step: another copy), so a step over a thousand cached positions moved more
//! bytes than it read weights; and a left-padded row computed scores for its padding.
//!
//! Here each (row, query head) pair is one task: the dot products of its query with the cached
//! keys its row may see, the softmax of [`fused`](super::fused) (scale, padding bias), and the
//! weighted sum of the values. A row's keys start at its first real position, so its numbers do
//! not depend on how much padding the batch gave it: a row decodes in a batch what it decodes
//! alone, to the bit. Every sum runs in a fixed order (eight lanes, combined in order), with
//! fused multiply-adds, so the vectorised and the plain loop agree.
//!
//! Only f32 burn-flex tensors take this path; any other backend answers `None` and the caller
//! uses burn's attention. Decoding never runs under autodiff.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rayon::prelude::*;

use super::{flex, fused};

/// Lanes of the dot products' partial sums.
const LANES: usize = 8;

/// Attention of one new query per row and head, `softmax(q · kᵀ · scale + bias) · v` over the
/// first `len` cached positions of `key` and `value` (buffers that may hold room for more).
/// Query head `h` reads key/value head `h / groups`. Keys before a row's first unmasked one
/// (its left padding, bias at most `f32::MIN / 2`) are skipped, which changes no value: they
/// would weigh exactly 0. A row with no unmasked key gets 0. `None` unless every tensor is an
/// f32 burn-flex tensor, `key`/`value` contiguous, and the shapes agree.
///
/// # Shapes
/// - q: `[batch, n_kv * groups, 1, dim]`
/// - key, value: `[batch, n_kv, capacity, dim]`, capacity ≥ len
/// - bias: `[batch, 1, 1, len]`
/// - output: `[batch, n_kv * groups, 1, dim]`
pub fn attention<B: Backend>(
    q: &Tensor<B, 4>,
    key: &Tensor<B, 4>,
    value: &Tensor<B, 4>,
    len: usize,
    bias: Option<&Tensor<B, 4>>,
    groups: usize,
) -> Option<Tensor<B, 4>> {
    let shape @ [batch, heads, one, dim] = q.dims();
    let [kb, n_kv, capacity, kd] = key.dims();
    if one != 1 || groups == 0 || kb != batch || kd != dim || n_kv * groups != heads {
        return None;
    }
    if value.dims() != key.dims() || len == 0 || len > capacity || dim == 0 {
        return None;
    }
    if bias.is_some_and(|b| b.dims() != [batch, 1, 1, len]) {
        return None;
    }
    let q = flex::contiguous_f32(q)?;
    let q = q.as_slice::<f32>()?;
    let (kp, vp) = (flex::primitive(key)?, flex::primitive(value)?);
    let (k, v) = (flex::f32_values(&kp)?, flex::f32_values(&vp)?);
    let bias = match bias {
        Some(b) => Some(flex::contiguous_f32(b)?),
        None => None,
    };
    let bias = match &bias {
        Some(b) => Some(b.as_slice::<f32>()?),
        None => None,
    };
    let scale = 1.0 / (dim as f32).sqrt();
    let mut out = vec![0f32; batch * heads * dim];
    out.par_chunks_mut(dim).enumerate().for_each(|(task, o)| {
        let (row, head) = (task / heads, task % heads);
        let row_bias = bias.map(|b| &b[row * len..(row + 1) * len]);
        // The row's first key it may see; none: the output stays 0.
        let Some(first) = row_bias.map_or(Some(0), |b| b.iter().position(|&x| x > f32::MIN / 2.0))
        else {
            return;
        };
        let at = (row * n_kv + head / groups) * capacity * dim;
        let keys = &k[at + first * dim..at + len * dim];
        let values = &v[at + first * dim..at + len * dim];
        head_attention(
            &q[task * dim..(task + 1) * dim],
            keys,
            values,
            row_bias.map(|b| &b[first..]),
            scale,
            o,
        );
    });
    flex::wrap(out, shape)
}

/// One query over its keys: `o = softmax(q · kᵀ · scale + bias) · v`.
fn head_attention(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    bias: Option<&[f32]>,
    scale: f32,
    o: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        #[allow(unsafe_code)]
        // SAFETY: the function is compiled for AVX2 and FMA, which this CPU was just found to have.
        unsafe {
            head_attention_avx2(q, keys, values, bias, scale, o)
        };
        return;
    }
    head_attention_plain(q, keys, values, bias, scale, o);
}

/// [`head_attention_plain`] compiled for AVX2 + FMA: the same operations, so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn head_attention_avx2(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    bias: Option<&[f32]>,
    scale: f32,
    o: &mut [f32],
) {
    head_attention_plain(q, keys, values, bias, scale, o);
}

#[inline(always)]
#[allow(clippy::needless_range_loop)] // indexed loops on purpose: see the first comment
fn head_attention_plain(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    bias: Option<&[f32]>,
    scale: f32,
    o: &mut [f32],
) {
    // Plain loops only: a closure or an iterator adaptor would be a function of its own,
    // compiled without the caller's AVX2 + FMA, and `mul_add` there a call to the C library.
    let dim = q.len();
    let n = keys.len() / dim;
    let mut scores = vec![0f32; n];
    // Four keys at a time: four independent chains of multiply-adds keep the FMA units busy,
    // and each key's sum is still exactly `dot`'s.
    let mut j = 0;
    while j + 4 <= n {
        let key = |i: usize| &keys[(j + i) * dim..(j + i + 1) * dim];
        let four = dot4(q, [key(0), key(1), key(2), key(3)]);
        scores[j..j + 4].copy_from_slice(&four);
        j += 4;
    }
    while j < n {
        scores[j] = dot(q, &keys[j * dim..(j + 1) * dim]);
        j += 1;
    }
    let mut weights = vec![0f32; n];
    fused::softmax_row(&scores, bias, scale, &mut weights);
    o.fill(0.0);
    for j in 0..n {
        let (w, v) = (weights[j], &values[j * dim..(j + 1) * dim]);
        for d in 0..dim {
            o[d] = w.mul_add(v[d], o[d]);
        }
    }
}

/// [`dot`] of `a` with four vectors at once, each summed exactly as `dot` sums it.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // indexed loops: no closure compiled without AVX2 + FMA
fn dot4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    let mut lanes = [[0f32; LANES]; 4];
    let full = a.len() / LANES * LANES;
    let mut i = 0;
    while i < full {
        for v in 0..4 {
            for l in 0..LANES {
                lanes[v][l] = a[i + l].mul_add(b[v][i + l], lanes[v][l]);
            }
        }
        i += LANES;
    }
    let mut sums = [0f32; 4];
    for v in 0..4 {
        let mut k = full;
        while k < a.len() {
            sums[v] = a[k].mul_add(b[v][k], sums[v]);
            k += 1;
        }
        for lane in lanes[v] {
            sums[v] += lane;
        }
    }
    sums
}

/// `a · b` as eight running sums of fused multiply-adds (lane `i % 8`), the tail, then the lanes
/// added in order.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // indexed loops: no closure compiled without AVX2 + FMA
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let full = a.len() / LANES * LANES;
    let mut i = 0;
    while i < full {
        for l in 0..LANES {
            lanes[l] = a[i + l].mul_add(b[i + l], lanes[l]);
        }
        i += LANES;
    }
    let mut sum = 0f32;
    while i < a.len() {
        sum = a[i].mul_add(b[i], sum);
        i += 1;
    }
    for lane in lanes {
        sum += lane;
    }
    sum
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, TensorData};

    use super::*;
    use crate::TestBackend;

    type B = TestBackend;

    fn values(t: Tensor<B, 4>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    /// burn's attention over the cached positions, key/value heads copied per query head.
    fn reference(
        q: &Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        bias: Option<&Tensor<B, 4>>,
        groups: usize,
    ) -> Tensor<B, 4> {
        let [batch, heads, _, _] = q.dims();
        let [_, _, len, _] = k.dims();
        let repeat = |x: Tensor<B, 4>| {
            let [b, h, len, d] = x.dims();
            x.unsqueeze_dim::<5>(2)
                .expand([b, h, groups, len, d])
                .reshape([b, h * groups, len, d])
        };
        let bias = bias.map(|b| b.clone().expand([batch, heads, 1, len]));
        let options = burn::tensor::ops::AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        burn::tensor::module::attention(q.clone(), repeat(k), repeat(v), None, bias, options)
    }

    /// Buffers with room after the cached positions, query groups of three, a left-padded row
    /// and a row whose last key is masked (a finished row): equal to burn's attention; and each
    /// row gives the same bits as alone without padding.
    #[test]
    fn a_step_over_the_cache_equals_attention_and_ignores_padding_to_the_bit() {
        let device = Default::default();
        let (batch, n_kv, groups, dim, len, room) = (3, 2, 3, 20, 45, 7);
        let normal = Distribution::Normal(0.0, 1.0);
        let q = Tensor::<B, 4>::random([batch, n_kv * groups, 1, dim], normal, &device);
        let k = Tensor::<B, 4>::random([batch, n_kv, len + room, dim], normal, &device);
        let v = Tensor::<B, 4>::random([batch, n_kv, len + room, dim], normal, &device);
        let pad = 9;
        let mut mask = vec![0f32; batch * len];
        mask[len..len + pad].fill(f32::MIN);
        mask[3 * len - 1] = f32::MIN;
        let bias = Tensor::<B, 4>::from_data(TensorData::new(mask, [batch, 1, 1, len]), &device);
        let ours = attention(&q, &k, &v, len, Some(&bias), groups).expect("flex f32 tensors");
        let theirs = reference(
            &q,
            k.clone().narrow(2, 0, len),
            v.clone().narrow(2, 0, len),
            Some(&bias),
            groups,
        );
        let (ours, theirs) = (values(ours), values(theirs));
        let diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "max difference {diff}");

        // Row 1 alone, without its padding and without room: the same bits.
        let row = |t: &Tensor<B, 4>, from: usize, to: usize| {
            t.clone().narrow(0, 1, 1).narrow(2, from, to - from)
        };
        let (k1, v1) = (row(&k, pad, len), row(&v, pad, len));
        let (k1, v1) = (
            Tensor::<B, 4>::from_data(k1.into_data(), &device),
            Tensor::<B, 4>::from_data(v1.into_data(), &device),
        );
        let alone = attention(
            &q.clone().narrow(0, 1, 1),
            &k1,
            &v1,
            len - pad,
            None,
            groups,
        )
        .expect("flex f32 tensors");
        let heads = n_kv * groups;
        assert_eq!(values(alone), ours[heads * dim..2 * heads * dim].to_vec());

        // Shapes that do not fit, and too few positions in the buffers: not this path.
        assert!(attention(&q, &k, &v, len + room + 1, None, groups).is_none());
        assert!(attention(&q, &k, &v, len, Some(&bias), 2).is_none());
    }

    /// A row whose every key is masked gets 0.
    #[test]
    fn a_row_that_sees_nothing_gets_zero() {
        let device = Default::default();
        let q = Tensor::<B, 4>::ones([1, 2, 1, 8], &device);
        let k = Tensor::<B, 4>::ones([1, 1, 4, 8], &device);
        let bias =
            Tensor::<B, 4>::from_data(TensorData::new(vec![f32::MIN; 4], [1, 1, 1, 4]), &device);
        let out = attention(&q, &k, &k, 4, Some(&bias), 2).unwrap();
        assert!(values(out).iter().all(|&x| x == 0.0));
    }
}
