//! Element-wise activations (ReLU, sigmoid) on all threads, differentiated from their output.
//!
//! dfdx's own run on one thread and keep their input for the backward pass. These split the
//! tensor into pieces over rayon's threads. Without a tape they overwrite the input when no other
//! tensor shares its buffer (as dfdx does); with one they write the output once into fresh memory
//! (the output needs its own id, and a new id needs a new buffer), and keep only the output for
//! the backward pass: both
//! derivatives can be written in terms of it (`y > 0` for ReLU, `y·(1 − y)` for the sigmoid), and
//! the output is the next layer's input, which that layer keeps anyway.

use super::{row_major_mut, Float, RowMajor};
use dfdx::prelude::*;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements per parallel piece: large enough that handing a piece to a thread costs little
/// beside it, small enough that LeNet-PALM's 0.5 M-element activation of one sample splits.
const PIECE: usize = 1 << 14;

/// Which function an [`activation`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`; NaN stays NaN, as in PyTorch.
    Relu,
    /// `1 / (1 + e^(−x))`.
    Sigmoid,
}

impl Activation {
    #[inline(always)]
    fn value<E: Float>(self, x: E) -> E {
        match self {
            // Written so that a NaN input compares false and comes out as NaN.
            Activation::Relu => {
                if x <= E::zero() {
                    E::zero()
                } else {
                    x
                }
            }
            Activation::Sigmoid => E::one() / (E::one() + (-x).exp()),
        }
    }

    /// The derivative at the input that gave output `y`.
    #[inline(always)]
    fn slope_from_output<E: Float>(self, y: E) -> E {
        match self {
            Activation::Relu => {
                if y > E::zero() {
                    E::one()
                } else {
                    E::zero()
                }
            }
            Activation::Sigmoid => y * (E::one() - y),
        }
    }
}

/// `max(x, 0)` element-wise, recorded on `x`'s tape. The derivative at 0 is 0, as in dfdx and
/// PyTorch.
pub fn relu<S: Shape, E: Float, T: Tape<E, Cpu>>(x: Tensor<S, E, Cpu, T>) -> Result<Tensor<S, E, Cpu, T>, CpuError> {
    activation(x, Activation::Relu)
}

/// `1 / (1 + e^(−x))` element-wise, recorded on `x`'s tape.
pub fn sigmoid<S: Shape, E: Float, T: Tape<E, Cpu>>(x: Tensor<S, E, Cpu, T>) -> Result<Tensor<S, E, Cpu, T>, CpuError> {
    activation(x, Activation::Sigmoid)
}

/// Applies `f` to every element of `x` on all threads, recorded on `x`'s tape.
pub fn activation<S: Shape, E: Float, T: Tape<E, Cpu>>(
    x: Tensor<S, E, Cpu, T>,
    f: Activation,
) -> Result<Tensor<S, E, Cpu, T>, CpuError> {
    if !T::OWNS_TAPE {
        // Nothing will ask for gradients, so the output may keep the input's id and buffer.
        let (mut x, tape) = x.split_tape();
        map_in_place(row_major_mut(&mut x), |v| f.value(v));
        return Ok(x.put_tape(tape));
    }
    let dev = x.device().clone();
    let shape = *x.shape();
    let (x, mut tape) = x.split_tape();
    let x_ghost = x.ghost();
    let values = {
        let input = RowMajor::new(&x);
        drop(x);
        map_to_new(input.as_slice(), |v| f.value(v))
    };
    let out = dev.try_tensor_from_vec(values, shape)?;
    let out_ghost = out.ghost();
    let y = RowMajor::new(&out);
    tape.add_backward_op(move |grads| {
        let dy = std::mem::take(&mut **grads.get_or_alloc_mut(&out_ghost)?);
        let dx: &mut [E] = grads.get_or_alloc_mut(&x_ghost)?;
        dx.par_chunks_mut(PIECE)
            .zip(dy.par_chunks(PIECE))
            .zip(y.as_slice().par_chunks(PIECE))
            .for_each(|((dx, dy), y)| {
                for ((dx, dy), y) in dx.iter_mut().zip(dy).zip(y) {
                    *dx += *dy * f.slope_from_output(*y);
                }
            });
        **grads.get_or_alloc_mut(&out_ghost)? = dy;
        Ok(())
    });
    Ok(out.put_tape(tape))
}

/// `values[i] = f(values[i])`, on all threads.
fn map_in_place<E: Float>(values: &mut [E], f: impl Fn(E) -> E + Sync) {
    values.par_chunks_mut(PIECE).for_each(|piece| {
        for v in piece {
            *v = f(*v);
        }
    });
}

/// `src` mapped through `f` into a new vector, on all threads, writing each element once
/// (no zero-fill first).
fn map_to_new<E: Float>(src: &[E], f: impl Fn(E) -> E + Sync) -> Vec<E> {
    let mut out: Vec<E> = Vec::with_capacity(src.len());
    out.spare_capacity_mut()[..src.len()]
        .par_chunks_mut(PIECE)
        .zip(src.par_chunks(PIECE))
        .for_each(|(dst, src)| {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = MaybeUninit::new(f(*s));
            }
        });
    // SAFETY: the loop above wrote every one of the first `src.len()` elements.
    unsafe { out.set_len(src.len()) };
    out
}
