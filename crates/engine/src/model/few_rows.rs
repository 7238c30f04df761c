//! `x · Wᵀ` for a few rows on the CPU backend: the products of a decoding step (one row per
//! prompt being answered) read every weight once and do little arithmetic per weight, so their
//! cost is reading the weights. A general matrix product first copies ("packs") the weight into
//! its own layout, which for a handful of rows reads and writes every weight again; here each
//! output feature is the dot product of the rows with that feature's weight row, read once, in
//! place (PyTorch's `[out, in]` layout keeps it contiguous), with the features split over the
//! backend's threads.
//!
//! The weight may be kept in f32 or bf16 (`--dtype bf16`: half the bytes to read, each widened
//! to f32 as it is loaded); the rows are f32. Only burn-flex tensors take this path; any other
//! backend, element type or layout answers `None` and the caller uses the backend's product.
//! Autodiff tensors are another type, so training never comes here.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use half::bf16;
use rayon::prelude::*;

use super::flex;

/// Most rows handled here in general; more rows (prompt processing) reuse each weight enough
/// for a general matrix product to be faster.
pub const MAX_ROWS: usize = 8;

/// Most rows handled here for a decoding step (one new token per row). A step of up to this many
/// rows comes here however many they are, so that a row's numbers (each the same dot products in
/// the same order, whatever the other rows) are those it has decoded alone; an evaluation
/// decodes at most 64 instances of five rows together.
pub const MAX_STEP_ROWS: usize = 512;

/// Output features per parallel task (a multiple of every tile's features).
const FEATURES_PER_TASK: usize = 48;

/// `x · Wᵀ` for `x: [rows, in]` (rows ≤ [`MAX_STEP_ROWS`]) and `weight: [out, in]`, when both
/// are contiguous burn-flex tensors, `x` in f32 and the weight in f32 or bf16; `None` otherwise.
pub fn project<B: Backend>(weight: &Tensor<B, 2>, x: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    let [rows, width] = x.dims();
    let [out, w_width] = weight.dims();
    if rows == 0 || rows > MAX_STEP_ROWS || width != w_width {
        return None;
    }
    let (w, xs) = (flex::primitive(weight)?, flex::primitive(x)?);
    let (w, xs) = (flex::tensor(&w)?, flex::f32_values(&xs)?);
    let y = if let Some(w) = w.as_slice::<f32>() {
        products(xs, w, rows, width, out)
    } else {
        products(xs, w.as_slice::<bf16>()?, rows, width, out)
    };
    flex::wrap(y, [rows, out])
}

/// The row-major `rows × out` products of `xs` (`rows × width`) with every weight row.
fn products<W: Lanes>(xs: &[f32], w: &[W], rows: usize, width: usize, out: usize) -> Vec<f32> {
    // Feature-major while computing (each task writes its own run), row-major at the end.
    let mut by_feature = vec![0f32; out * rows];
    by_feature
        .par_chunks_mut(FEATURES_PER_TASK * rows)
        .enumerate()
        .for_each(|(task, chunk)| {
            let first = task * FEATURES_PER_TASK;
            let features = chunk.len() / rows;
            let w = &w[first * width..(first + features) * width];
            feature_dots(xs, w, rows, width, chunk);
        });
    let mut y = vec![0f32; rows * out];
    for (feature, dots) in by_feature.chunks(rows).enumerate() {
        for (row, &d) in dots.iter().enumerate() {
            y[row * out + feature] = d;
        }
    }
    y
}

/// A weight element the kernels read: f32 as it is, bf16 widened to f32 (its 16 bits are the
/// upper half of the f32 with the same value).
trait Lanes: Copy + Send + Sync {
    /// The value as f32.
    fn value(self) -> f32;

    /// Eight values from `v[k..k + 8]`, widened to f32.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    unsafe fn load8(v: &[Self], k: usize) -> std::arch::x86_64::__m256;
}

impl Lanes for f32 {
    fn value(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline]
    #[allow(unsafe_code)]
    unsafe fn load8(v: &[f32], k: usize) -> std::arch::x86_64::__m256 {
        let lanes = &v[k..k + 8];
        // SAFETY: `lanes` holds the eight floats the unaligned load reads.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(lanes.as_ptr()) }
    }
}

impl Lanes for bf16 {
    fn value(self) -> f32 {
        self.to_f32()
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline]
    #[allow(unsafe_code)]
    unsafe fn load8(v: &[bf16], k: usize) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::{
            __m128i, _mm_loadu_si128, _mm256_castsi256_ps, _mm256_cvtepu16_epi32, _mm256_slli_epi32,
        };
        let lanes = &v[k..k + 8];
        // SAFETY: `lanes` holds the sixteen bytes the unaligned load reads; the caller
        // guarantees AVX2 for the widening and the shift.
        unsafe {
            let halves = _mm_loadu_si128(lanes.as_ptr().cast::<__m128i>());
            _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16))
        }
    }
}

/// `dots[f · rows + r] = x[r] · w[f]` for every row `r` of the row-major `xs` and every weight
/// row `f` of `w`.
///
/// Every dot product is summed the same way, whatever the rows and features around it: two
/// eight-lane running sums of fused multiply-adds (`even` over elements `16i..16i + 8`, `odd`
/// over `16i + 8..16i + 16`), a last whole eight into `even`, the lanes of `even + odd` added in
/// order, then the tail. So a row's numbers are the same alone or among any number of rows, and
/// the AVX2 kernel (pairs of rows × pairs of features sharing their loads) gives the plain
/// loop's bits.
#[allow(unsafe_code)]
fn feature_dots<W: Lanes>(xs: &[f32], w: &[W], rows: usize, width: usize, dots: &mut [f32]) {
    assert!(xs.len() >= rows * width && dots.len() * width == w.len() * rows);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: calling a function compiled for AVX2 and FMA is sound on a CPU that has both,
        // which was just checked.
        unsafe { feature_dots_avx2(xs, w, rows, width, dots) };
        return;
    }
    for (f, dots) in dots.chunks_mut(rows).enumerate() {
        let wf = &w[f * width..(f + 1) * width];
        for (r, d) in dots.iter_mut().enumerate() {
            *d = dot_plain(&xs[r * width..(r + 1) * width], wf);
        }
    }
}

/// One dot product, summed as [`feature_dots`] says.
#[allow(clippy::needless_range_loop)] // indexed lanes, as the AVX2 kernel has them
fn dot_plain<W: Lanes>(x: &[f32], w: &[W]) -> f32 {
    let width = w.len();
    let (mut even, mut odd) = ([0f32; 8], [0f32; 8]);
    let mut k = 0;
    while k + 16 <= width {
        for l in 0..8 {
            even[l] = x[k + l].mul_add(w[k + l].value(), even[l]);
            odd[l] = x[k + 8 + l].mul_add(w[k + 8 + l].value(), odd[l]);
        }
        k += 16;
    }
    if k + 8 <= width {
        for l in 0..8 {
            even[l] = x[k + l].mul_add(w[k + l].value(), even[l]);
        }
        k += 8;
    }
    let mut lanes = [0f32; 8];
    for l in 0..8 {
        lanes[l] = even[l] + odd[l];
    }
    finish(lanes, &x[k..width], &w[k..])
}

/// The lanes added in order, then the tail's products.
#[inline(always)]
fn finish<W: Lanes>(lanes: [f32; 8], x: &[f32], w: &[W]) -> f32 {
    let mut sum: f32 = lanes.iter().sum();
    for (&a, &b) in x.iter().zip(w) {
        sum += a * b.value();
    }
    sum
}

/// [`feature_dots`] with AVX2 + FMA: pairs of rows with pairs of features (each vector loaded
/// once for two products), single products for a last row or feature.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(unsafe_code)]
fn feature_dots_avx2<W: Lanes>(xs: &[f32], w: &[W], rows: usize, width: usize, dots: &mut [f32]) {
    let features = w.len() / width;
    let mut r = 0;
    while r < rows {
        let pair = rows - r >= 2;
        let mut f = 0;
        while f < features {
            // SAFETY (all): this function runs only where AVX2 and FMA are present, and every
            // tile lies within `xs`, `w` and `dots` (rows `r..r + R`, features `f..f + F`).
            if pair && features - f >= 2 {
                unsafe { tile::<2, 2, W>(xs, w, r, f, rows, width, dots) };
                f += 2;
            } else {
                for row in r..r + if pair { 2 } else { 1 } {
                    unsafe { tile::<1, 1, W>(xs, w, row, f, rows, width, dots) };
                }
                f += 1;
            }
        }
        r += if pair { 2 } else { 1 };
    }
}

/// The dot products of rows `r..r + R` with weight rows `f..f + F` into `dots` (feature-major,
/// `rows` per feature), summed as [`feature_dots`] says.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(unsafe_code, clippy::needless_range_loop, clippy::too_many_arguments)]
unsafe fn tile<const R: usize, const F: usize, W: Lanes>(
    xs: &[f32],
    w: &[W],
    r: usize,
    f: usize,
    rows: usize,
    width: usize,
    dots: &mut [f32],
) {
    use std::arch::x86_64::{_mm256_add_ps, _mm256_fmadd_ps, _mm256_setzero_ps, _mm256_storeu_ps};
    let x_row = |i: usize| &xs[(r + i) * width..(r + i + 1) * width];
    let w_row = |j: usize| &w[(f + j) * width..(f + j + 1) * width];
    let mut even = [[_mm256_setzero_ps(); F]; R];
    let mut odd = [[_mm256_setzero_ps(); F]; R];
    let mut k = 0;
    while k + 16 <= width {
        let mut w0 = [_mm256_setzero_ps(); F];
        let mut w1 = [_mm256_setzero_ps(); F];
        for j in 0..F {
            // SAFETY: AVX2 is present (the caller's contract); `k + 16 <= width`.
            (w0[j], w1[j]) = unsafe { (W::load8(w_row(j), k), W::load8(w_row(j), k + 8)) };
        }
        for i in 0..R {
            // SAFETY: as above.
            let (x0, x1) = unsafe { (f32::load8(x_row(i), k), f32::load8(x_row(i), k + 8)) };
            for j in 0..F {
                even[i][j] = _mm256_fmadd_ps(x0, w0[j], even[i][j]);
                odd[i][j] = _mm256_fmadd_ps(x1, w1[j], odd[i][j]);
            }
        }
        k += 16;
    }
    if k + 8 <= width {
        for i in 0..R {
            for j in 0..F {
                // SAFETY: AVX2 is present; `k + 8 <= width`.
                let (x0, w0) = unsafe { (f32::load8(x_row(i), k), W::load8(w_row(j), k)) };
                even[i][j] = _mm256_fmadd_ps(x0, w0, even[i][j]);
            }
        }
        k += 8;
    }
    for i in 0..R {
        for j in 0..F {
            let mut lanes = [0f32; 8];
            // SAFETY: `lanes` has room for the eight floats stored.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(even[i][j], odd[i][j])) };
            dots[(f + j) * rows + r + i] = finish(lanes, &x_row(i)[k..], &w_row(j)[k..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    fn tensor(values: Vec<f32>, shape: [usize; 2]) -> Tensor<Flex, 2> {
        Tensor::from_data(TensorData::new(values, shape), &Default::default())
    }

    /// Widths with and without a tail, one to eight rows, more features than one task.
    const SHAPES: [(usize, usize, usize); 4] =
        [(1, 576, 200), (5, 37, 130), (8, 64, 64), (3, 1, 7)];

    /// Rows `[rows, width]` and a weight `[out, width]` of a few distinct values.
    fn case(rows: usize, width: usize, out: usize) -> (Tensor<Flex, 2>, Tensor<Flex, 2>) {
        let x: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
            .collect();
        let w: Vec<f32> = (0..out * width)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 7.3)
            .collect();
        (tensor(x, [rows, width]), tensor(w, [out, width]))
    }

    fn assert_close(fast: Tensor<Flex, 2>, general: Tensor<Flex, 2>, what: &str) {
        assert_eq!(fast.dims(), general.dims(), "{what}");
        let diff: f32 = (fast - general.clone()).abs().max().into_scalar();
        let scale: f32 = general.abs().max().into_scalar();
        assert!(diff <= 1e-5 * scale.max(1.0), "{what}: {diff} of {scale}");
    }

    #[test]
    fn few_rows_equal_the_general_product_within_rounding() {
        for (rows, width, out) in SHAPES {
            let (x, w) = case(rows, width, out);
            let fast = project(&w, &x).expect("f32 burn-flex tensors take the fast path");
            let general = x.matmul(w.transpose());
            assert_close(fast, general, &format!("{rows}x{width}x{out}"));
        }
    }

    #[test]
    fn bf16_weights_are_read_in_place_as_their_f32_values() {
        for (rows, width, out) in SHAPES {
            let (x, w) = case(rows, width, out);
            let w = w.cast(burn::tensor::DType::BF16);
            let fast = project(&w, &x).expect("a bf16 weight takes the fast path");
            let widened = w.cast(burn::tensor::DType::F32);
            let same_values = project(&widened, &x).unwrap();
            let values = |t: Tensor<Flex, 2>| t.into_data().to_vec::<f32>().unwrap();
            let what = format!("{rows}x{width}x{out}");
            assert_eq!(values(fast.clone()), values(same_values), "{what}");
            assert_close(fast, x.matmul(widened.transpose()), &what);
        }
    }

    /// A decoding step of many rows gives each row the bits it gets alone.
    #[test]
    fn a_row_gives_the_same_bits_alone_and_among_many() {
        let (rows, width, out) = (40, 100, 70);
        let (x, w) = case(rows, width, out);
        let values = |t: Tensor<Flex, 2>| t.into_data().to_vec::<f32>().unwrap();
        let xs = values(x.clone());
        let all = values(project(&w, &x).expect("40 rows take this path"));
        for r in [0, 17, 39] {
            let one = tensor(xs[r * width..(r + 1) * width].to_vec(), [1, width]);
            assert_eq!(
                values(project(&w, &one).unwrap()),
                all[r * out..(r + 1) * out]
            );
        }
    }

    #[test]
    fn other_shapes_and_layouts_go_to_the_general_product() {
        let w = tensor(vec![1.0; 4 * 6], [4, 6]);
        let many = tensor(vec![1.0; (MAX_STEP_ROWS + 1) * 6], [MAX_STEP_ROWS + 1, 6]);
        assert!(project(&w, &many).is_none(), "more rows than MAX_STEP_ROWS");
        let transposed = tensor(vec![1.0; 6 * 4], [6, 4]).transpose();
        let x = tensor(vec![1.0; 2 * 4], [2, 4]);
        assert!(project(&transposed, &x).is_none(), "a strided weight view");
        let autodiff =
            Tensor::<burn::backend::Autodiff<Flex>, 2>::ones([4, 6], &Default::default());
        let x = Tensor::<burn::backend::Autodiff<Flex>, 2>::ones([2, 6], &Default::default());
        assert!(
            project(&autodiff, &x).is_none(),
            "autodiff tensors record their graph"
        );
    }
}
