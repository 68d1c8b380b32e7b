//! [`ReLU`] and [`Sigmoid`] layers: dfdx's, computed on all threads ([`crate::ops::activation`]).

use crate::ops::{self, Float};
use dfdx::prelude::*;

/// `max(x, 0)` on every element. Same values and gradients as dfdx's `ReLU`, which it replaces
/// in the models: that one runs on one thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReLU;

/// `1 / (1 + e^(−x))` on every element. Same values and gradients as dfdx's `Sigmoid`, on all
/// threads.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sigmoid;

impl ZeroSizedModule for ReLU {}
impl NonMutableModule for ReLU {}
impl ZeroSizedModule for Sigmoid {}
impl NonMutableModule for Sigmoid {}

impl<S: Shape, E: Float, T: Tape<E, Cpu>> Module<Tensor<S, E, Cpu, T>> for ReLU {
    type Output = Tensor<S, E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<S, E, Cpu, T>) -> Result<Self::Output, CpuError> {
        ops::relu(x)
    }
}

impl<S: Shape, E: Float, T: Tape<E, Cpu>> Module<Tensor<S, E, Cpu, T>> for Sigmoid {
    type Output = Tensor<S, E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<S, E, Cpu, T>) -> Result<Self::Output, CpuError> {
        ops::sigmoid(x)
    }
}
