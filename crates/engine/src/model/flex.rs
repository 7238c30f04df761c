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
