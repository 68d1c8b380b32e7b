//! Element-wise activations (ReLU, sigmoid) on all threads, differentiated from their output.
//!
//! dfdx's own run on one thread and keep their input for the backward pass. These split the
//! tensor into pieces over rayon's threads. Without a tape they overwrite the input when no other
//! tensor shares its buffer (as dfdx does); with one they write the output once into fresh memory
//! (the output needs its own id, and a new id needs a new buffer), and keep only the output for
//! the backward pass: both
//! derivatives can be written in terms of it (`y > 0` for ReLU, `y·(1 − y)` for the sigmoid), and
//! the output is the next layer's input, which that layer keeps anyway.

use super::{as_f32, as_f32_mut, has_avx2_fma, row_major_mut, Float, RowMajor};
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
        map_in_place(row_major_mut(&mut x), f);
        return Ok(x.put_tape(tape));
    }
    let dev = x.device().clone();
    let shape = *x.shape();
    let (x, mut tape) = x.split_tape();
    let x_ghost = x.ghost();
    let values = {
        let input = RowMajor::new(&x);
        drop(x);
        map_to_new(input.as_slice(), f)
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
fn map_in_place<E: Float>(values: &mut [E], f: Activation) {
    values.par_chunks_mut(PIECE).for_each(|piece| {
        if let (Activation::Sigmoid, Some(piece)) = (f, as_f32_mut(piece)) {
            if has_avx2_fma() {
                let (src, dst) = (piece.as_ptr(), piece.as_mut_ptr());
                // SAFETY: the CPU has AVX2 and FMA; `src` and `dst` are the same `piece.len()`
                // elements, each read before it is written.
                return unsafe { sigmoid_f32_avx2(src, dst, piece.len()) };
            }
        }
        for v in piece {
            *v = f.value(*v);
        }
    });
}

/// `src` mapped through `f` into a new vector, on all threads, writing each element once
/// (no zero-fill first).
fn map_to_new<E: Float>(src: &[E], f: Activation) -> Vec<E> {
    let mut out: Vec<E> = Vec::with_capacity(src.len());
    out.spare_capacity_mut()[..src.len()]
        .par_chunks_mut(PIECE)
        .zip(src.par_chunks(PIECE))
        .for_each(|(dst, src)| {
            if let (Activation::Sigmoid, Some(src)) = (f, as_f32(src)) {
                if has_avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA; `dst` has room for `src.len()` elements
                    // (of E, which is f32 like `src`).
                    return unsafe { sigmoid_f32_avx2(src.as_ptr(), dst.as_mut_ptr().cast::<f32>(), src.len()) };
                }
            }
            for (d, s) in dst.iter_mut().zip(src) {
                *d = MaybeUninit::new(f.value(*s));
            }
        });
    // SAFETY: the loop above wrote every one of the first `src.len()` elements.
    unsafe { out.set_len(src.len()) };
    out
}

/// The sigmoid of `n` f32s from `src` into `dst` (which may be `src`), 8 at a time: `e^(−x)` by
/// Cody and Waite's range reduction, `−x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, and a degree-7
/// polynomial for `e^r` (Cephes' `expf` coefficients, within 2 ulp of `e^r`), then `2^n` put
/// into the exponent bits and `1 / (1 + e^(−x))` divided exactly. libm's scalar `expf` made the
/// sigmoid of LeNet-PALM's 2.9 M-element first activation take 9 ms on two cores.
///
/// `−x` is clamped to `[−87, 88]`, where `2^n` is a normal float: outside it the sigmoid is 1 or
/// below 1e-38 anyway. NaN passes the clamp (`max`/`min` return their second operand when one is
/// NaN) and comes out NaN, as from the scalar formula.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `src` must be readable and `dst` writable for `n` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sigmoid_f32_avx2(src: *const f32, dst: *mut f32, n: usize) {
    use std::arch::x86_64::*;
    let one = _mm256_set1_ps(1.0);
    let sigmoid8 = |x: __m256| -> __m256 {
        let t = _mm256_sub_ps(_mm256_setzero_ps(), x);
        let t = _mm256_min_ps(_mm256_set1_ps(88.0), _mm256_max_ps(_mm256_set1_ps(-87.0), t));
        let k = _mm256_round_ps(
            _mm256_mul_ps(t, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        // ln 2 in two parts, the first exact in few bits, so that k·LN2_HI has no rounding.
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693_359_4), t);
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let e_r = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), one);
        let two_k = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(k),
            _mm256_set1_epi32(127),
        )));
        _mm256_div_ps(one, _mm256_add_ps(one, _mm256_mul_ps(e_r, two_k)))
    };
    let full = n - n % 8;
    for i in (0..full).step_by(8) {
        _mm256_storeu_ps(dst.add(i), sigmoid8(_mm256_loadu_ps(src.add(i))));
    }
    if full < n {
        let mut tail = [0.0f32; 8];
        std::ptr::copy_nonoverlapping(src.add(full), tail.as_mut_ptr(), n - full);
        _mm256_storeu_ps(tail.as_mut_ptr(), sigmoid8(_mm256_loadu_ps(tail.as_ptr())));
        std::ptr::copy_nonoverlapping(tail.as_ptr(), dst.add(full), n - full);
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn sigmoid_f32_avx2(_: *const f32, _: *mut f32, _: usize) {
    unreachable!("has_avx2_fma() is false off x86_64")
}
