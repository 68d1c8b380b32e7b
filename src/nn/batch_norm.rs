//! [`BatchNorm2d`]: batch normalisation of `[B, C, H, W]` with running statistics.

use super::shape_check::check_channels;
use crate::ops::{batch_norm2d, BatchNormMode, Float};
use dfdx::prelude::*;

/// Batch normalisation over channels, with PaddlePaddle's defaults (the course's framework):
/// ε = 1e-5, running statistics `running = 0.9·running + 0.1·batch` (PyTorch's momentum 0.1).
///
/// - Training ([`ModuleMut`] on a batch with an `OwnedTape`): normalises by the batch's mean and
///   biased variance and updates the running statistics.
/// - Evaluation ([`Module`], any tape): normalises by the running statistics; with a tape (as
///   for Grad-CAM) the gradients still flow, the statistics stay fixed.
///
/// Tensors are named as PyTorch names them (`weight`, `bias`, `running_mean`, `running_var`);
/// the running statistics are not trainable and not counted by `num_trainable_params`. An input
/// with other than `C` channels fails `cargo build`.
#[derive(Debug, Clone)]
pub struct BatchNorm2d<const C: usize, E: Dtype = f32, D: Storage<E> = Cpu> {
    /// Scale γ, one per channel (starts at 1).
    pub weight: Tensor<Rank1<C>, E, D>,
    /// Shift β, one per channel (starts at 0).
    pub bias: Tensor<Rank1<C>, E, D>,
    /// Running mean (starts at 0).
    pub running_mean: Tensor<Rank1<C>, E, D>,
    /// Running biased variance (starts at 1).
    pub running_var: Tensor<Rank1<C>, E, D>,
}

impl<const C: usize, E: Dtype, D: Storage<E>> BatchNorm2d<C, E, D> {
    /// Added to the variance before the square root.
    pub const EPSILON: f64 = 1e-5;
    /// Weight of the old running estimate in each update.
    pub const MOMENTUM: f64 = 0.9;
}

impl<const C: usize, E: Dtype, D: Storage<E>, E2: Dtype, D2: Device<E2>> BuildOnDevice<D2, E2>
    for BatchNorm2d<C, E, D>
{
    type Built = BatchNorm2d<C, E2, D2>;
}

impl<const C: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for BatchNorm2d<C, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = BatchNorm2d<C, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_to_ones(),
                ),
                Self::tensor("bias", |s| &s.bias, |s| &mut s.bias, TensorOptions::reset_to_zeros()),
                Self::tensor(
                    "running_mean",
                    |s| &s.running_mean,
                    |s| &mut s.running_mean,
                    TensorOptions::detached(|t| t.try_fill_with_zeros()),
                ),
                Self::tensor(
                    "running_var",
                    |s| &s.running_var,
                    |s| &mut s.running_var,
                    TensorOptions::detached(|t| t.try_fill_with_ones()),
                ),
            ),
            |(weight, bias, running_mean, running_var)| BatchNorm2d {
                weight,
                bias,
                running_mean,
                running_var,
            },
        )
    }
}

impl<const C: usize, B: Dim, const IC: usize, H: Dim, W: Dim, E: Float, T: Tape<E, Cpu>>
    Module<Tensor<(B, Const<IC>, H, W), E, Cpu, T>> for BatchNorm2d<C, E, Cpu>
{
    type Output = Tensor<(B, Const<C>, H, W), E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<(B, Const<IC>, H, W), E, Cpu, T>) -> Result<Self::Output, CpuError> {
        const { check_channels("BatchNorm2d", IC, C) };
        let (mean, var) = (self.running_mean.as_vec(), self.running_var.as_vec());
        let mode = BatchNormMode::Eval { mean: &mean, var: &var };
        batch_norm2d(x, &self.weight, &self.bias, mode, Self::EPSILON)
    }
}

impl<const C: usize, B: Dim, const IC: usize, H: Dim, W: Dim, E: Float>
    ModuleMut<Tensor<(B, Const<IC>, H, W), E, Cpu, OwnedTape<E, Cpu>>> for BatchNorm2d<C, E, Cpu>
{
    type Output = Tensor<(B, Const<C>, H, W), E, Cpu, OwnedTape<E, Cpu>>;
    type Error = CpuError;

    fn try_forward_mut(
        &mut self,
        x: Tensor<(B, Const<IC>, H, W), E, Cpu, OwnedTape<E, Cpu>>,
    ) -> Result<Self::Output, CpuError> {
        const { check_channels("BatchNorm2d", IC, C) };
        let (mut mean, mut var) = (self.running_mean.as_vec(), self.running_var.as_vec());
        let mode = BatchNormMode::Train {
            running_mean: &mut mean,
            running_var: &mut var,
            momentum: Self::MOMENTUM,
        };
        let y = batch_norm2d(x, &self.weight, &self.bias, mode, Self::EPSILON)?;
        self.running_mean.copy_from(&mean);
        self.running_var.copy_from(&var);
        Ok(y)
    }
}
