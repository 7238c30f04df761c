//! Element-wise work of prompt processing done in one pass on the CPU backend: the SwiGLU gate
//! `silu(gate) · up` and the causal softmax of attention scores. Through burn's tensor ops each
//! is a chain of passes over memory (SiLU alone is a sigmoid, which burn-flex computes one
//! element at a time with the C library's `expf` on one thread, then two products), and the
//! softmax computes the exponential of every masked future key only to multiply it by zero.
//! Here each output element is written once, rows are split over the backend's threads, and the
//! exponential is a polynomial the compiler vectorises.
//!
//! Only contiguous f32 burn-flex tensors take these paths; any other backend, element type or
//! layout answers `None` and the caller uses burn's ops. Autodiff tensors are another type, so
//! training and every gradient go through burn's ops as before.
//!
//! The exponential: `exp(x) = 2ⁿ · e^r` with `n = round(x / ln 2)`, `r = x − n ln 2` (ln 2 in
//! two parts, so `r` is exact to a few ulp), and `e^r` from its Taylor series to degree 7, whose
//! truncation error on `|r| ≤ ln 2 / 2` is below 1e-8 relative. Every step is an IEEE operation
//! (products and sums as fused multiply-adds, which are correctly rounded in hardware and in
//! software alike), so the vectorised and the plain loop give the same bits on any CPU, and an
//! element's value never depends on its neighbours or its row's position in a batch.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rayon::prelude::*;

use super::flex;

/// Lanes of an AVX2 vector of f32.
const LANES: usize = 8;

/// Elements per parallel task of the SwiGLU gate.
const GATE_CHUNK: usize = 16 * 1024;

/// Below this `exp` is 0 (the smallest normal f32 is `exp(-87.34)`).
const EXP_LOW: f32 = -87.3;
/// Above this `exp` is taken at this value (`exp(88.3) ≈ 2.2e38`, still finite); only SiLU of
/// very negative inputs comes here, where `x / (1 + e)` is 0 either way.
const EXP_HIGH: f32 = 88.3;

/// ln 2 in two parts: `LN2_HI` has trailing zero bits, so `n · LN2_HI` is exact for the `n` here.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// `1/k!` for k = 7 down to 0: the Taylor coefficients of `eʳ`, highest first (Horner's scheme).
const TAYLOR: [f32; 8] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];
/// 1.5 · 2²³: adding it to an integer-valued float below 2²² in magnitude puts the integer in the
/// low bits of the sum's mantissa (a float-to-integer conversion that vectorises, unlike `as`).
const SHIFT: f32 = 12_582_912.0;

/// `eˣ` within about 2 ulp; 0 below [`EXP_LOW`]; NaN stays NaN.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let clamped = x.clamp(EXP_LOW, EXP_HIGH); // NaN stays NaN
    let n = (clamped * std::f32::consts::LOG2_E).round_ties_even();
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, clamped));
    let p = TAYLOR[1..].iter().fold(TAYLOR[0], |p, &c| p.mul_add(r, c));
    // 2ⁿ from its exponent bits (n is an integer in [-126, 127]).
    let n_bits = (n + SHIFT).to_bits().wrapping_sub(SHIFT.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if x < EXP_LOW { 0.0 } else { p * scale }
}

/// `silu(g) · u = g / (1 + e⁻ᵍ) · u`, as PyTorch's SiLU computes it.
#[inline(always)]
fn silu_times(g: f32, u: f32) -> f32 {
    g / (1.0 + exp(-g)) * u
}

/// `out[i] = silu(gate[i]) · up[i]`.
fn gate_chunk(gate: &[f32], up: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        #[allow(unsafe_code)]
        // SAFETY: the function is compiled for AVX2 and FMA, which this CPU was just found to have.
        unsafe {
            gate_chunk_avx2(gate, up, out)
        };
        return;
    }
    gate_chunk_plain(gate, up, out);
}

#[inline(always)]
fn gate_chunk_plain(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = silu_times(g, u);
    }
}

/// [`gate_chunk_plain`] eight elements at a time with AVX2 + FMA (the same operations, so the
/// same bits), then the tail.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gate_chunk_avx2(gate: &[f32], up: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::{
        _mm256_add_ps, _mm256_div_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_xor_ps,
    };
    let full = out.len().min(gate.len()).min(up.len()) / LANES * LANES;
    let mut i = 0;
    while i < full {
        let g = avx2::load(gate, i);
        let e = avx2::exp8(_mm256_xor_ps(g, _mm256_set1_ps(-0.0)));
        let y = _mm256_mul_ps(
            _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0), e)),
            avx2::load(up, i),
        );
        avx2::store(out, i, y);
        i += LANES;
    }
    gate_chunk_plain(&gate[full..], &up[full..], &mut out[full..]);
}

/// `silu(gate) · up` for two contiguous f32 burn-flex tensors of one shape; `None` otherwise.
pub fn swiglu<B: Backend, const D: usize>(
    gate: &Tensor<B, D>,
    up: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    let shape = gate.dims();
    if up.dims() != shape {
        return None;
    }
    let (g, u) = (flex::primitive(gate)?, flex::primitive(up)?);
    let (g, u) = (flex::f32_values(&g)?, flex::f32_values(&u)?);
    let mut out = vec![0f32; g.len()];
    out.par_chunks_mut(GATE_CHUNK)
        .zip(g.par_chunks(GATE_CHUNK).zip(u.par_chunks(GATE_CHUNK)))
        .for_each(|(o, (g, u))| gate_chunk(g, u, o));
    flex::wrap(out, shape)
}

/// The causal softmax of one block of grouped attention scores: row `g · len + r` of every
/// `[rows, visible]` matrix is the query at position `first + r`, which sees keys `0..=first + r`.
/// Each score is scaled, the padding bias of its key added, and the row normalised over the keys
/// it sees; future keys get probability 0, and a row whose every visible key is padding (its best
/// score at most `f32::MIN / 2`) is all 0, as transformers' SDPA attention leaves a query that
/// sees only padding. `None` unless `scores` is a contiguous f32 burn-flex tensor (and `bias`, if
/// any, one of shape `[batch, 1, 1, width]` covering at least the visible keys: the whole row's
/// bias, so that it stays contiguous).
///
/// # Shapes
/// - scores: `[batch, heads, rows, visible]`, unscaled `q · kᵀ`
/// - bias: `[batch, 1, 1, width]`, width ≥ visible (keys past `visible` are not read)
/// - output: `[batch, heads, rows, visible]`
pub fn causal_softmax<B: Backend>(
    scores: &Tensor<B, 4>,
    scale: f32,
    first: usize,
    len: usize,
    bias: Option<&Tensor<B, 4>>,
) -> Option<Tensor<B, 4>> {
    let shape @ [batch, heads, rows, visible] = scores.dims();
    if len == 0 || rows % len != 0 || first + len > visible {
        return None;
    }
    let s = flex::primitive(scores)?;
    let s = flex::f32_values(&s)?;
    let width = bias.map_or(visible, |t| t.dims()[3]);
    let b = match bias {
        Some(t) if t.dims() != [batch, 1, 1, width] || width < visible => return None,
        Some(t) => Some(flex::primitive(t)?),
        None => None,
    };
    let b = match &b {
        Some(p) => Some(flex::f32_values(p)?),
        None => None,
    };
    let mut out = vec![0f32; s.len()];
    out.par_chunks_mut(visible)
        .zip(s.par_chunks(visible))
        .enumerate()
        .for_each(|(row_index, (o, s))| {
            let sees = first + row_index % rows % len + 1;
            let bias = b.map(|b| &b[row_index / (heads * rows) * width..][..sees]);
            softmax_row(&s[..sees], bias, scale, &mut o[..sees]);
        });
    flex::wrap(out, shape)
}

/// `o = s · scale + bias`: the scores a row's softmax normalises.
#[inline(always)]
fn scaled_scores(s: &[f32], bias: Option<&[f32]>, scale: f32, o: &mut [f32]) {
    match bias {
        Some(b) => {
            for ((o, &s), &b) in o.iter_mut().zip(s).zip(b) {
                *o = s * scale + b;
            }
        }
        None => {
            for (o, &s) in o.iter_mut().zip(s) {
                *o = s * scale;
            }
        }
    }
}

/// `o = softmax(s · scale + bias)`, or all 0 when the best score is at most `f32::MIN / 2`.
pub(super) fn softmax_row(s: &[f32], bias: Option<&[f32]>, scale: f32, o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        #[allow(unsafe_code)]
        // SAFETY: the function is compiled for AVX2 and FMA, which this CPU was just found to have.
        unsafe {
            softmax_row_avx2(s, bias, scale, o)
        };
        return;
    }
    softmax_row_plain(s, bias, scale, o);
}

#[inline(always)]
fn softmax_row_plain(s: &[f32], bias: Option<&[f32]>, scale: f32, o: &mut [f32]) {
    scaled_scores(s, bias, scale, o);
    // Eight running maxima and sums (one per vector lane), combined in a fixed order: the
    // compiler vectorises the loops, and the result does not depend on the CPU.
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = o.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            *m = if x > *m { x } else { *m };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    if max <= f32::MIN / 2.0 {
        o.fill(0.0);
        return;
    }
    let mut sums = [0f32; LANES];
    let mut chunks = o.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (acc, x) in sums.iter_mut().zip(chunk) {
            *x = exp(*x - max);
            *acc += *x;
        }
    }
    let mut sum = 0f32;
    for x in chunks.into_remainder() {
        *x = exp(*x - max);
        sum += *x;
    }
    let sum = sums.iter().fold(sum, |total, &s| total + s);
    let inv = 1.0 / sum;
    for x in o.iter_mut() {
        *x *= inv;
    }
}

/// [`softmax_row_plain`] with AVX2 + FMA: the same operations in the same order per lane, so
/// the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn softmax_row_avx2(s: &[f32], bias: Option<&[f32]>, scale: f32, o: &mut [f32]) {
    use std::arch::x86_64::{
        _mm256_add_ps, _mm256_max_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_sub_ps,
    };
    let n = o.len();
    let full = n / LANES * LANES;
    scaled_scores(s, bias, scale, o);
    let mut lanes = _mm256_set1_ps(f32::NEG_INFINITY);
    for i in (0..full).step_by(LANES) {
        // `max(x, m)` is `m` when `x` is NaN or not larger: `if x > m { x } else { m }`.
        lanes = _mm256_max_ps(avx2::load(o, i), lanes);
    }
    let max = o[full..]
        .iter()
        .chain(&avx2::lanes(lanes))
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    if max <= f32::MIN / 2.0 {
        o.fill(0.0);
        return;
    }
    let mut sums = _mm256_set1_ps(0.0);
    for i in (0..full).step_by(LANES) {
        let e = avx2::exp8(_mm256_sub_ps(avx2::load(o, i), _mm256_set1_ps(max)));
        avx2::store(o, i, e);
        sums = _mm256_add_ps(sums, e);
    }
    let mut sum = 0f32;
    for x in &mut o[full..] {
        *x = exp(*x - max);
        sum += *x;
    }
    let sum = avx2::lanes(sums).iter().fold(sum, |total, &s| total + s);
    let inv = 1.0 / sum;
    for i in (0..full).step_by(LANES) {
        avx2::store(o, i, _mm256_mul_ps(avx2::load(o, i), _mm256_set1_ps(inv)));
    }
    for x in &mut o[full..] {
        *x *= inv;
    }
}

/// [`exp`] on eight lanes, and the loads and stores around it.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, _CMP_GT_OQ, _CMP_LT_OQ, _MM_FROUND_NO_EXC, _MM_FROUND_TO_NEAREST_INT,
        _mm256_add_epi32, _mm256_add_ps, _mm256_blendv_ps, _mm256_castps_si256,
        _mm256_castsi256_ps, _mm256_cmp_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_mul_ps,
        _mm256_round_ps, _mm256_set1_epi32, _mm256_set1_ps, _mm256_setzero_ps, _mm256_slli_epi32,
        _mm256_storeu_ps, _mm256_sub_epi32,
    };

    use super::{EXP_HIGH, EXP_LOW, LANES};

    /// [`super::exp`] lane by lane: the same operations, so the same bits.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn exp8(x: __m256) -> __m256 {
        let (high, low) = (_mm256_set1_ps(EXP_HIGH), _mm256_set1_ps(EXP_LOW));
        let above = _mm256_cmp_ps::<_CMP_GT_OQ>(x, high);
        let below = _mm256_cmp_ps::<_CMP_LT_OQ>(x, low);
        let clamped = _mm256_blendv_ps(_mm256_blendv_ps(x, high, above), low, below);
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(clamped, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-super::LN2_HI), clamped);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-super::LN2_LO), r);
        let mut p = _mm256_set1_ps(super::TAYLOR[0]);
        for &c in &super::TAYLOR[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let shifted = _mm256_castps_si256(_mm256_add_ps(n, _mm256_set1_ps(super::SHIFT)));
        let n_bits = _mm256_sub_epi32(shifted, _mm256_set1_epi32(super::SHIFT.to_bits() as i32));
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            n_bits,
            _mm256_set1_epi32(127),
        )));
        _mm256_blendv_ps(_mm256_mul_ps(p, scale), _mm256_setzero_ps(), below)
    }

    /// Eight floats from `v[i..i + 8]`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn load(v: &[f32], i: usize) -> __m256 {
        let lanes = &v[i..i + LANES];
        // SAFETY: `lanes` holds the eight floats the unaligned load reads.
        #[allow(unsafe_code)]
        unsafe {
            _mm256_loadu_ps(lanes.as_ptr())
        }
    }

    /// Stores eight floats into `v[i..i + 8]`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn store(v: &mut [f32], i: usize, x: __m256) {
        let lanes = &mut v[i..i + LANES];
        // SAFETY: `lanes` has room for the eight floats stored.
        #[allow(unsafe_code)]
        unsafe {
            _mm256_storeu_ps(lanes.as_mut_ptr(), x)
        }
    }

    /// The eight lanes as an array, lane 0 first.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn lanes(x: __m256) -> [f32; LANES] {
        let mut out = [0f32; LANES];
        store(&mut out, 0, x);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;
    use burn::tensor::activation::{silu, softmax};
    use burn::tensor::{Bool, Distribution};

    type T<const D: usize> = Tensor<Flex, D>;

    fn assert_close<const D: usize>(fast: T<D>, reference: T<D>, tolerance: f32, what: &str) {
        assert_eq!(fast.dims(), reference.dims(), "{what}");
        let diff: f32 = (fast - reference).abs().max().into_scalar();
        assert!(diff <= tolerance, "{what}: differs by {diff}");
    }

    #[test]
    fn exp_is_within_two_ulp_over_the_whole_range_and_exact_at_the_edges() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let relative = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(relative);
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-88.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(f32::MIN), 0.0);
        assert!(exp(f32::INFINITY).is_finite() && exp(200.0) > 1e38);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn the_vectorised_loops_give_the_plain_loops_bits() {
        let values: Vec<f32> = (0..1003)
            .map(|i| ((i * 37 % 401) as f32 - 200.0) / 9.0)
            .collect();
        let up: Vec<f32> = values.iter().map(|v| v * 0.5 - 1.0).collect();
        let (mut fast, mut plain) = (vec![0f32; values.len()], vec![0f32; values.len()]);
        gate_chunk(&values, &up, &mut fast);
        gate_chunk_plain(&values, &up, &mut plain);
        assert_eq!(fast, plain);
        let bias: Vec<f32> = (0..values.len())
            .map(|i| if i % 7 == 0 { f32::MIN } else { 0.0 })
            .collect();
        softmax_row(&values, Some(&bias), 0.125, &mut fast);
        softmax_row_plain(&values, Some(&bias), 0.125, &mut plain);
        assert_eq!(fast, plain);
        assert!((fast.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn swiglu_is_silu_times_up() {
        let device = Default::default();
        let gate = T::<3>::random([2, 37, 300], Distribution::Normal(0.0, 4.0), &device);
        let up = T::<3>::random([2, 37, 300], Distribution::Normal(0.0, 1.0), &device);
        let fused = swiglu(&gate, &up).expect("contiguous f32 on the CPU backend");
        assert_close(fused, silu(gate.clone()) * up.clone(), 1e-5, "swiglu");
        // A view that is not contiguous is left to burn's ops.
        assert!(swiglu(&gate.clone().swap_dims(0, 1), &up.swap_dims(0, 1)).is_none());
    }

    /// burn's ops on the same block: scale, mask the future, add the padding bias, softmax, and
    /// zero the rows that see only padding.
    fn reference(scores: T<4>, scale: f32, first: usize, len: usize, bias: Option<T<4>>) -> T<4> {
        let [batch, heads, rows, visible] = scores.dims();
        let device = scores.device();
        let future: Vec<bool> = (0..rows)
            .flat_map(|row| (0..visible).map(move |key| key > first + row % len))
            .collect();
        let future =
            Tensor::<Flex, 2, Bool>::from_data(TensorData::new(future, [rows, visible]), &device)
                .reshape([1, 1, rows, visible])
                .expand([batch, heads, rows, visible]);
        let mut s = scores
            .mul_scalar(scale)
            .mask_fill(future, f32::NEG_INFINITY);
        if let Some(b) = &bias {
            s = s + b.clone().expand([batch, heads, rows, visible]);
        }
        let sees_nothing = s.clone().max_dim(3).lower_elem(f32::MIN / 2.0);
        softmax(s, 3).mask_fill(sees_nothing.expand([batch, heads, rows, visible]), 0.0)
    }

    #[test]
    fn causal_softmax_equals_burns_masked_softmax_with_and_without_padding() {
        let device = Default::default();
        // Two groups of five queries at positions 3..8 over 8 keys; batch row 1 is left-padded
        // by 5, so its first two queries see only padding.
        let (first, len, groups, visible) = (3, 5, 2, 8);
        let scores = T::<4>::random(
            [2, 3, groups * len, visible],
            Distribution::Normal(0.0, 6.0),
            &device,
        );
        // The bias covers two keys more than the block sees (a later block's): never read.
        let width = visible + 2;
        let pad: Vec<f32> = (0..2 * width)
            .map(|i| {
                let (row, key) = (i / width, i % width);
                if (row == 1 && key < 5) || key >= visible {
                    f32::MIN
                } else {
                    0.0
                }
            })
            .collect();
        let wide = T::<4>::from_data(TensorData::new(pad, [2, 1, 1, width]), &device);
        for bias in [None, Some(wide.clone().narrow(3, 0, visible))] {
            let whole = bias.as_ref().map(|_| &wide);
            let fused = causal_softmax(&scores, 0.125, first, len, whole).expect("fused path");
            let want = reference(scores.clone(), 0.125, first, len, bias.clone());
            assert_close(fused.clone(), want, 1e-6, "causal softmax");
            if bias.is_some() {
                let padded_first_query: f32 = fused
                    .clone()
                    .slice([1..2, 0..1, 0..1, 0..visible])
                    .abs()
                    .sum()
                    .into_scalar();
                assert_eq!(padded_first_query, 0.0);
            }
        }
        // Shapes it does not cover are refused, not computed wrong.
        assert!(causal_softmax(&scores, 0.125, 4, len, None).is_none());
        assert!(causal_softmax(&scores, 0.125, first, 3, None).is_none());
    }
}
