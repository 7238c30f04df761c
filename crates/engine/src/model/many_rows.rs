//! `x · Wᵀ` for many rows on the CPU backend (prompt processing): the rows are split into one
//! run per thread and each run is a single-threaded product of the `gemm` crate (the one
//! burn-flex calls). burn-flex asks `gemm` to parallelise each product itself, and on the
//! products of a small model that gains little from a second thread (on 398 rows, 2 threads:
//! 93-137 GFLOP/s for SmolLM2's projections against 154-157 split by rows, PyTorch's MKL 154-162;
//! BENCHMARKS.md). Each thread packs the weight for its own rows, which costs little next to the
//! product.
//!
//! A row's result does not depend on the other rows or on where the split falls: `gemm`'s
//! single-threaded product sums each output over the inputs in blocks set by the inner dimension
//! and the cache sizes, not by the number of rows, except on three paths this module stays off:
//! one row (a matrix-vector product), at most 256 outputs in one call (`rows · out`, its small
//! kernels), and `out ≤ 64` with more than 512 inputs (blocks then depend on the rows). A run
//! has at least [`MIN_RUN`] rows unless there are fewer rows than that in all.
//!
//! Only contiguous f32 burn-flex tensors take this path (a bf16 weight, another backend or
//! layout answers `None` and the caller uses the backend's product). Autodiff tensors are
//! another type, so training never comes here.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rayon::prelude::*;

use super::flex;

/// Fewest rows in one thread's run.
pub const MIN_RUN: usize = 16;

/// `x · Wᵀ` for `x: [rows, in]` and `weight: [out, in]`, both contiguous f32 burn-flex tensors;
/// `None` otherwise.
pub fn project<B: Backend>(weight: &Tensor<B, 2>, x: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    let [rows, width] = x.dims();
    let [out, w_width] = weight.dims();
    let runs = rayon::current_num_threads().min(rows / MIN_RUN).max(1);
    // Off the paths where a row's sums would depend on its neighbours (module docs), for every
    // run (the shortest has `rows / runs` rows).
    if rows < 2 || width != w_width || (rows / runs) * out <= 256 || (out <= 64 && width > 512) {
        return None;
    }
    let (w, xs) = (flex::primitive(weight)?, flex::primitive(x)?);
    let (w, xs) = (flex::f32_values(&w)?, flex::f32_values(&xs)?);
    // Runs of `rows / runs` or one more rows (so every run has at least MIN_RUN).
    let mut y = vec![0f32; rows * out];
    let mut parts = Vec::with_capacity(runs);
    let (mut y_rest, mut x_rest) = (y.as_mut_slice(), xs);
    for run in 0..runs {
        let n = rows / runs + usize::from(run < rows % runs);
        let (y_run, y_next) = y_rest.split_at_mut(n * out);
        let (x_run, x_next) = x_rest.split_at(n * width);
        parts.push((y_run, x_run));
        (y_rest, x_rest) = (y_next, x_next);
    }
    parts
        .into_par_iter()
        .for_each(|(y, x)| product(x, w, y, width, out));
    flex::wrap(y, [rows, out])
}

/// `y = x · wᵀ` on this thread, `x: [n, width]`, `w: [out, width]`, `y: [n, out]`, row-major.
#[allow(unsafe_code)]
fn product(x: &[f32], w: &[f32], y: &mut [f32], width: usize, out: usize) {
    let n = x.len() / width;
    assert!(x.len() == n * width && w.len() == out * width && y.len() == n * out);
    // SAFETY: the three slices hold exactly the matrices described by the sizes and strides
    // (checked above): `x` row-major `[n, width]`, `w` read as the `[width, out]` matrix `wᵀ`
    // (element (i, j) at `j * width + i`), and `y` row-major `[n, out]`, written and not read
    // (alpha, the factor of its old value, is 0 and `read_dst` is false).
    unsafe {
        gemm::gemm(
            n,
            out,
            width,
            y.as_mut_ptr(),
            1,
            out as isize,
            false,
            x.as_ptr(),
            1,
            width as isize,
            w.as_ptr(),
            width as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    use super::*;

    fn tensor(values: Vec<f32>, shape: [usize; 2]) -> Tensor<Flex, 2> {
        Tensor::from_data(TensorData::new(values, shape), &Default::default())
    }

    fn values(t: Tensor<Flex, 2>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    /// Equal to burn's product within rounding, and every row the same bits whatever rows it
    /// comes with and however the threads split them.
    #[test]
    fn rows_equal_the_general_product_and_do_not_depend_on_their_neighbours() {
        let (rows, width, out) = (203, 70, 90);
        let x: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 7919 % 1013) as f32 - 500.0) / 400.0)
            .collect();
        let w: Vec<f32> = (0..out * width)
            .map(|i| ((i * 104_729 % 997) as f32 - 498.0) / 300.0)
            .collect();
        let (xt, wt) = (tensor(x.clone(), [rows, width]), tensor(w, [out, width]));
        let all = values(project(&wt, &xt).expect("flex f32 tensors"));
        let reference = values(xt.matmul(wt.clone().transpose()));
        let diff = all
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "max difference {diff}");
        for pool_threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(pool_threads)
                .build()
                .unwrap();
            for (start, len) in [(0, rows), (5, 9), (17, 40), (150, 53)] {
                let part = tensor(
                    x[start * width..(start + len) * width].to_vec(),
                    [len, width],
                );
                let y = pool.install(|| values(project(&wt, &part).unwrap()));
                assert_eq!(
                    y,
                    all[start * out..(start + len) * out],
                    "rows {start}..{} on {pool_threads} threads",
                    start + len
                );
            }
        }
    }
}
