//! Reaching burn-flex's storage from backend-generic code, for the engine's own CPU kernels
//! ([`super::few_rows`], [`super::fused`]): a tensor's primitive, seen as a `FlexTensor` when the
//! backend is burn-flex, and a result wrapped back as a tensor of the caller's backend.

use std::any::Any;

use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

/// The float primitive of `t` (`None` for a quantized tensor).
pub(super) fn primitive<B: Backend, const D: usize>(
    t: &Tensor<B, D>,
) -> Option<B::FloatTensorPrimitive> {
    match t.clone().into_primitive() {
        TensorPrimitive::Float(p) => Some(p),
        TensorPrimitive::QFloat(_) => None,
    }
}

/// `p` as a burn-flex tensor, if the backend is burn-flex.
pub(super) fn tensor<P: Any>(p: &P) -> Option<&FlexTensor> {
    (p as &dyn Any).downcast_ref::<FlexTensor>()
}

/// The contiguous f32 values of `p`, if it is such a burn-flex tensor.
pub(super) fn f32_values<P: Any>(p: &P) -> Option<&[f32]> {
    tensor(p)?.as_slice::<f32>()
}

/// Row-major f32 `values` as a tensor of the caller's backend (`None` unless it is burn-flex).
pub(super) fn wrap<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
) -> Option<Tensor<B, D>> {
    let result: Box<dyn Any> = Box::new(FlexTensor::from_data(TensorData::new(values, shape)));
    let primitive = *result.downcast::<B::FloatTensorPrimitive>().ok()?;
    Some(Tensor::from_primitive(TensorPrimitive::Float(primitive)))
}

/// `t`'s values as a contiguous f32 burn-flex tensor (a copy only when `t` is a strided view),
/// if `t` is an f32 burn-flex tensor.
pub(super) fn contiguous_f32<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<FlexTensor> {
    let p = primitive(t)?;
    let t = tensor(&p)?;
    (t.dtype() == burn::tensor::DType::F32).then(|| t.to_contiguous())
}

/// Runs `write` on the storage of `t` in place when `t` is a contiguous f32 burn-flex tensor
/// that covers its whole buffer and shares it with no other tensor, and gives `t` back as
/// `Ok`; gives it back untouched as `Err` otherwise (another backend, a view, a shared buffer).
pub(super) fn write_in_place<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    write: impl FnOnce(&mut [f32]),
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let p = match t.into_primitive() {
        TensorPrimitive::Float(p) => p,
        q @ TensorPrimitive::QFloat(_) => return Err(Tensor::from_primitive(q)),
    };
    let mut boxed: Box<dyn Any> = Box::new(p);
    let mut written = false;
    if let Some(f) = boxed.downcast_mut::<FlexTensor>() {
        let whole = f.dtype() == burn::tensor::DType::F32
            && f.is_contiguous()
            && f.layout().start_offset() == 0
            && f.bytes().len() == f.layout().num_elements() * size_of::<f32>();
        if whole && let Some(values) = f.try_storage_mut::<f32>() {
            write(values);
            written = true;
        }
    }
    let p = *boxed
        .downcast::<B::FloatTensorPrimitive>()
        .unwrap_or_else(|_| unreachable!("the box holds the primitive it was given"));
    let t = Tensor::from_primitive(TensorPrimitive::Float(p));
    if written { Ok(t) } else { Err(t) }
}

/// One-row `[1, heads, len_r, dim]` f32 burn-flex tensors stacked as `[rows, heads, to + room,
/// dim]`, each row's positions at the end of its first `to` (zeros before them and in the
/// `room` after): one pass writing the result. `None` unless every row is such a tensor with
/// `len_r ≤ to` and the same heads and width.
pub(super) fn stack_left_padded<B: Backend>(
    rows: &[Tensor<B, 4>],
    to: usize,
    room: usize,
) -> Option<Tensor<B, 4>> {
    let [_, heads, _, dim] = rows.first()?.dims();
    let cap = to + room;
    let mut out = vec![0f32; rows.len() * heads * cap * dim];
    for (r, row) in rows.iter().enumerate() {
        let [one, h, len, d] = row.dims();
        if one != 1 || h != heads || d != dim || len > to {
            return None;
        }
        let values = contiguous_f32(row)?;
        let values = values.as_slice::<f32>()?;
        for (head, src) in values.chunks_exact(len * dim).enumerate() {
            let start = ((r * heads + head) * cap + to - len) * dim;
            out[start..start + len * dim].copy_from_slice(src);
        }
    }
    wrap(out, [rows.len(), heads, cap, dim])
}
