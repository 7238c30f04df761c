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

/// How a model's matrices are kept in memory. The norms stay f32, and so do the activations:
/// a product with a half-precision weight widens the weight to f32 (decoding reads it in place,
/// see `model::few_rows`), so a bf16 model computes as the f32 model does from bf16-rounded
/// weights, with half the memory.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    /// 32-bit floats (the default).
    #[default]
    F32,
    /// bfloat16: f32's range, 8 bits of mantissa (what 7B checkpoints ship in).
    Bf16,
    /// IEEE half precision.
    F16,
}

impl WeightDtype {
    /// Every choice, as `--dtype` spells them.
    pub const ALL: [WeightDtype; 3] = [WeightDtype::F32, WeightDtype::Bf16, WeightDtype::F16];

    /// The name `--dtype` takes (`f32`, `bf16`, `f16`).
    pub fn as_str(self) -> &'static str {
        match self {
            WeightDtype::F32 => "f32",
            WeightDtype::Bf16 => "bf16",
            WeightDtype::F16 => "f16",
        }
    }

    /// Whether this is the default (f32), for leaving it out of stored settings.
    pub fn is_f32(&self) -> bool {
        *self == WeightDtype::F32
    }

    /// The choice whose element type is `dtype` (`None` for a type matrices are not kept in).
    pub fn of(dtype: burn::tensor::DType) -> Option<WeightDtype> {
        WeightDtype::ALL.into_iter().find(|d| d.dtype() == dtype)
    }

    /// The tensor element type.
    pub fn dtype(self) -> burn::tensor::DType {
        match self {
            WeightDtype::F32 => burn::tensor::DType::F32,
            WeightDtype::Bf16 => burn::tensor::DType::BF16,
            WeightDtype::F16 => burn::tensor::DType::F16,
        }
    }
}

impl std::fmt::Display for WeightDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WeightDtype {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        WeightDtype::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown dtype `{s}`: expected f32, bf16 or f16"))
    }
}

/// A [`ParamSource`] keeping `inner`'s matrices as `dtype` (the norms stay f32). Each matrix is
/// converted as it arrives, so loading never holds more than one f32 matrix beyond the model.
#[derive(Debug)]
pub struct WithDtype<S> {
    /// Where the tensors come from.
    pub inner: S,
    /// How matrices are kept.
    pub dtype: WeightDtype,
}

impl<B: Backend, S: ParamSource<B>> ParamSource<B> for WithDtype<S> {
    fn vector(&mut self, id: WeightId, len: usize) -> Result<Tensor<B, 1>> {
        self.inner.vector(id, len)
    }

    fn matrix(&mut self, id: WeightId, shape: [usize; 2]) -> Result<Tensor<B, 2>> {
        let m = self.inner.matrix(id, shape)?;
        Ok(match self.dtype {
            WeightDtype::F32 => m,
            other => m.cast(other.dtype()),
        })
    }
}

#[cfg(test)]
mod dtype_tests {
    use super::*;

    #[test]
    fn dtypes_parse_as_the_flag_spells_them() {
        for d in WeightDtype::ALL {
            assert_eq!(d.as_str().parse::<WeightDtype>(), Ok(d));
        }
        assert_eq!("BF16".parse::<WeightDtype>(), Ok(WeightDtype::Bf16));
        let err = "fp8".parse::<WeightDtype>().unwrap_err();
        assert!(err.contains("fp8") && err.contains("bf16"), "{err}");
    }

    #[test]
    fn matrices_take_the_dtype_and_norms_stay_f32() {
        type B = burn::backend::Flex;
        let device = Default::default();
        let mut source = WithDtype {
            inner: RandomInit::<B>::new(1, 0.1, &device),
            dtype: WeightDtype::Bf16,
        };
        let m = source.matrix(WeightId::Embed, [4, 3]).unwrap();
        assert_eq!(m.dtype(), burn::tensor::DType::BF16);
        let v = source.vector(WeightId::FinalNorm, 3).unwrap();
        assert_eq!(v.dtype(), burn::tensor::DType::F32);
    }
}
