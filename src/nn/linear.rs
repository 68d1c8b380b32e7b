//! [`Linear`]: a fully connected layer with bias.

use crate::ops::{linear, Float};
use dfdx::prelude::*;
use rand::distributions::uniform::SampleUniform;
use rand_distr::Uniform;

/// Fully connected layer: `IN` → `OUT` features, `y = x·Wᵀ + b`.
///
/// It replaces dfdx's `Linear` (same tensor names, `weight: [OUT, IN]` and `bias: [OUT]`, so
/// checkpoints and PyTorch's `nn.Linear` state dicts read the same) because dfdx multiplies a
/// batch of 10 by a large weight well below memory speed: AlexNet's `fc1` weight gradient took
/// ten times as long as writing its 205 MB once. Input sizes are checked when the program is
/// built: an input with other than `IN` features has no `forward`.
///
/// Initialisation as PyTorch's: weight and bias uniform in `±1/√IN`.
#[derive(Debug, Clone)]
pub struct Linear<const IN: usize, const OUT: usize, E: Dtype = f32, D: Storage<E> = Cpu> {
    /// `[OUT, IN]`.
    pub weight: Tensor<Rank2<OUT, IN>, E, D>,
    /// One bias per output.
    pub bias: Tensor<Rank1<OUT>, E, D>,
}

impl<
        const I: usize,
        const O: usize,
        E: Dtype,
        D: Storage<E>,
        E2: Dtype + num_traits::Float + SampleUniform,
        D2: Device<E2>,
    > BuildOnDevice<D2, E2> for Linear<I, O, E, D>
{
    type Built = Linear<I, O, E2, D2>;
}

impl<const I: usize, const O: usize, E: Dtype + num_traits::Float + SampleUniform, D: Device<E>> TensorCollection<E, D>
    for Linear<I, O, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Linear<I, O, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| {
                        t.try_fill_with_distr(Uniform::new(-Self::init_bound(), Self::init_bound()))
                    }),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| {
                        t.try_fill_with_distr(Uniform::new(-Self::init_bound(), Self::init_bound()))
                    }),
                ),
            ),
            |(weight, bias)| Linear { weight, bias },
        )
    }
}

impl<const I: usize, const O: usize, E: Dtype + num_traits::Float, D: Storage<E>> Linear<I, O, E, D> {
    /// Half-width of the uniform initialisation: `1/√IN`.
    pub fn init_bound() -> E {
        E::one() / E::from(I).expect("fan-in fits the float type").sqrt()
    }
}

impl<const I: usize, const O: usize, E: Dtype, D: Storage<E>> NonMutableModule for Linear<I, O, E, D> {}

impl<const I: usize, const O: usize, B: Dim, E: Float, T: Tape<E, Cpu>> Module<Tensor<(B, Const<I>), E, Cpu, T>>
    for Linear<I, O, E, Cpu>
{
    type Output = Tensor<(B, Const<O>), E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<(B, Const<I>), E, Cpu, T>) -> Result<Self::Output, CpuError> {
        linear(x, &self.weight, Some(&self.bias))
    }
}
