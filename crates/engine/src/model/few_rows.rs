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

/// Most rows handled here; more rows (prompt processing) reuse each weight enough for a
/// general matrix product to be faster.
pub const MAX_ROWS: usize = 8;

/// Output features per parallel task.
const FEATURES_PER_TASK: usize = 64;

/// `x · Wᵀ` for `x: [rows, in]` (rows ≤ [`MAX_ROWS`]) and `weight: [out, in]`, when both are
/// contiguous burn-flex tensors, `x` in f32 and the weight in f32 or bf16; `None` otherwise.
pub fn project<B: Backend>(weight: &Tensor<B, 2>, x: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    let [rows, width] = x.dims();
    let [out, w_width] = weight.dims();
    if rows == 0 || rows > MAX_ROWS || width != w_width {
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
            for (j, dots) in chunk.chunks_mut(rows).enumerate() {
                let feature = first + j;
                row_dots(xs, &w[feature * width..(feature + 1) * width], dots);
            }
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

/// `dots[r] = x[r] · w` for every row `r` of the row-major `x`.
#[allow(unsafe_code)]
fn row_dots<W: Lanes>(x: &[f32], w: &[W], dots: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: calling a function compiled for AVX2 and FMA is sound on a CPU that has both,
        // which was just checked.
        unsafe { row_dots_avx2(x, w, dots) };
        return;
    }
    for (r, d) in dots.iter_mut().enumerate() {
        let row = &x[r * w.len()..(r + 1) * w.len()];
        *d = row.iter().zip(w).map(|(a, b)| a * b.value()).sum();
    }
}

/// [`row_dots`] with AVX2 + FMA: two 8-lane partial sums per row, then the tail.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(unsafe_code)]
fn row_dots_avx2<W: Lanes>(x: &[f32], w: &[W], dots: &mut [f32]) {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let width = w.len();
    assert!(x.len() >= dots.len() * width);
    // Eight lanes starting at `k` of `v`.
    // SAFETY (both): this function runs only where AVX2 is present.
    let load = |v: &[f32], k: usize| -> __m256 { unsafe { f32::load8(v, k) } };
    let load_w = |k: usize| -> __m256 { unsafe { W::load8(w, k) } };
    for (r, d) in dots.iter_mut().enumerate() {
        let row = &x[r * width..(r + 1) * width];
        let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut k = 0;
        while k + 16 <= width {
            even = _mm256_fmadd_ps(load(row, k), load_w(k), even);
            odd = _mm256_fmadd_ps(load(row, k + 8), load_w(k + 8), odd);
            k += 16;
        }
        if k + 8 <= width {
            even = _mm256_fmadd_ps(load(row, k), load_w(k), even);
            k += 8;
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` has room for the eight floats stored.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(even, odd)) };
        let mut sum: f32 = lanes.iter().sum();
        for (a, b) in row[k..].iter().zip(&w[k..]) {
            sum += a * b.value();
        }
        *d = sum;
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

    #[test]
    fn other_shapes_and_layouts_go_to_the_general_product() {
        let w = tensor(vec![1.0; 4 * 6], [4, 6]);
        let many = tensor(vec![1.0; (MAX_ROWS + 1) * 6], [MAX_ROWS + 1, 6]);
        assert!(project(&w, &many).is_none(), "more rows than MAX_ROWS");
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
