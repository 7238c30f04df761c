//! Where the tensors of a model being built come from ([`ParamSource`]): a checkpoint
//! ([`StoreSource`](super::StoreSource)) or a seeded random init ([`RandomInit`]).

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::error::Result;
use crate::names::WeightId;

/// Where the weights of a model being built come from: a checkpoint or a random init.
pub trait ParamSource<B: Backend> {
    /// A vector parameter (the norms) of the given length.
    fn vector(&mut self, id: WeightId, len: usize) -> Result<Tensor<B, 1>>;
    /// A matrix parameter of the given `[rows, cols]` shape.
    fn matrix(&mut self, id: WeightId, shape: [usize; 2]) -> Result<Tensor<B, 2>>;
}

/// Seeded random init computed on the host, so every backend gets the same weights: norms are
/// ones, matrices are N(0, std²).
#[derive(Debug)]
pub struct RandomInit<'a, B: Backend> {
    rng: StdRng,
    std: f32,
    device: &'a B::Device,
}

impl<'a, B: Backend> RandomInit<'a, B> {
    /// A source seeded with `seed`.
    pub fn new(seed: u64, std: f32, device: &'a B::Device) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            std,
            device,
        }
    }

    fn normal(&mut self) -> f32 {
        // Box-Muller.
        let u1: f32 = self.rng.random::<f32>().max(f32::MIN_POSITIVE);
        let u2: f32 = self.rng.random::<f32>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
}

impl<B: Backend> ParamSource<B> for RandomInit<'_, B> {
    fn vector(&mut self, _id: WeightId, len: usize) -> Result<Tensor<B, 1>> {
        Ok(Tensor::ones([len], self.device))
    }

    fn matrix(&mut self, _id: WeightId, shape: [usize; 2]) -> Result<Tensor<B, 2>> {
        let values: Vec<f32> = (0..shape[0] * shape[1])
            .map(|_| self.normal() * self.std)
            .collect();
        Ok(Tensor::from_data(
            TensorData::new(values, shape),
            self.device,
        ))
    }
}
