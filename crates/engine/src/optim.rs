//! Optimisation helpers shared by the edits (DINM, FT-L) and the trainers: Adam for one matrix
//! with PyTorch's update, and host reads of scalars and Frobenius norms.

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};

pub(crate) fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

pub(crate) fn frobenius<B: Backend>(t: Tensor<B, 2>) -> f64 {
    t.square().sum().into_scalar().elem::<f64>().sqrt()
}

/// Adam for one matrix with PyTorch's update (`torch.optim.Adam`, `foreach=False`):
/// `w ← w − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)`, weight decay added to the gradient.
pub(crate) struct Adam<B: Backend> {
    lr: f64,
    weight_decay: f64,
    m: Tensor<B, 2>,
    v: Tensor<B, 2>,
    t: i32,
}

impl<B: Backend> Adam<B> {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    pub(crate) fn new(like: &Tensor<B, 2>, lr: f64, weight_decay: f64) -> Self {
        let zeros = like.zeros_like();
        Self {
            lr,
            weight_decay,
            m: zeros.clone(),
            v: zeros,
            t: 0,
        }
    }

    pub(crate) fn step(&mut self, w: Tensor<B, 2>, grad: Tensor<B, 2>) -> Tensor<B, 2> {
        let grad = if self.weight_decay != 0.0 {
            grad + w.clone() * self.weight_decay
        } else {
            grad
        };
        self.t += 1;
        self.m = self.m.clone() * Self::BETA1 + grad.clone() * (1.0 - Self::BETA1);
        self.v = self.v.clone() * Self::BETA2 + grad.square() * (1.0 - Self::BETA2);
        let bias1 = 1.0 - Self::BETA1.powi(self.t);
        let bias2 = 1.0 - Self::BETA2.powi(self.t);
        let denom = self.v.clone().sqrt() / bias2.sqrt() + Self::EPS;
        w - self.m.clone() / denom * (self.lr / bias1)
    }
}
