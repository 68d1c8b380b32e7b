//! Fully connected layer, `y = x·Wᵀ + b`: GEMMs, and for batches up to 16 blocked loops that
//! stream the weight once.
//!
//! Layouts follow PyTorch and Paddle's checkpoints: input `[B, I]`, weight `[O, I]`, bias `[O]`,
//! output `[B, O]`. The batch is small (10) and the weight large (AlexNet's `fc1` is 4096 × 12,544,
//! 205 MB; LeNet-PALM's 64 × 300,000), so every pass is bound by reading or writing the weight
//! once. The backward pass therefore accumulates the weight gradient `dyᵀ·x` and the input
//! gradient `dy·W` straight into dfdx's gradient buffers instead of into temporaries that would
//! be added afterwards.

use super::gemm::{matmul, MatRef};
use super::{as_f32, as_f32_mut, dot, has_avx2_fma, threads, Float, RowMajor};
use dfdx::prelude::*;
use rayon::prelude::*;

/// Batches up to this size take [`small_batch_forward`] and [`small_batch_input_grad`], which
/// stream the weight once, row after row; the GEMM crate's packing made these passes 2–3× slower
/// than PyTorch at batch 10 (bench/README.md, per-layer table).
const SMALL_BATCH: usize = 16;
/// Weight rows handled together: each pass over a block of `x` (forward) or of `dx` (input
/// gradient) serves four rows, which are read as four sequential streams.
const ROWS: usize = 4;
/// Input columns per block in the forward pass: a block of every sample's inputs
/// (≤ 16 × 4096 × 4 B = 256 KB) stays in L2 while the rows' blocks stream past it.
const FORWARD_BLOCK: usize = 4096;

/// Defines `$name`, which runs `$body` compiled for AVX-512 or for AVX2 + FMA when the CPU has
/// them: the crate is built for baseline x86-64, whose 4-wide SSE2 loops fell behind memory here.
/// (`$body` must be `#[inline(always)]` and contain no closures that do the work: features reach
/// only code inlined into the wrapper.)
macro_rules! simd_dispatch {
    ($(#[$doc:meta])* fn $name:ident => $body:ident ($($arg:ident : $ty:ty),*)) => {
        $(#[$doc])*
        fn $name<E: Float>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn v4<E: Float>($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3<E: Float>($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
                    // SAFETY: the CPU has the features `v4` is compiled for.
                    return unsafe { v4($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for `v3`.
                    return unsafe { v3($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// `y[b, o] += Σ_i x[b, i] · W[o, i]` for a small batch: threads split the output rows.
fn small_batch_forward<E: Float>(y: &mut [E], x: &[E], w: &[E], (batch, inputs, outputs): (usize, usize, usize)) {
    let per_thread = outputs.div_ceil(threads()).next_multiple_of(ROWS).max(ROWS);
    let mut y_t = vec![E::zero(); outputs * batch]; // [O, B], so threads own disjoint rows
    y_t.par_chunks_mut(per_thread * batch)
        .enumerate()
        .for_each(|(t, y_rows)| forward_rows(y_rows, t * per_thread, x, w, (batch, inputs, outputs)));
    for (b, y_b) in y.chunks_exact_mut(outputs).enumerate() {
        for (o, v) in y_b.iter_mut().enumerate() {
            *v += y_t[o * batch + b];
        }
    }
}

simd_dispatch! {
    /// Rows `o_first ..` of `y_t` (`[O, B]`), four weight rows at a time, inputs in blocks of
    /// [`FORWARD_BLOCK`].
    fn forward_rows => forward_rows_body(y_rows: &mut [E], o_first: usize, x: &[E], w: &[E], sizes: (usize, usize, usize))
}

#[inline(always)]
fn forward_rows_body<E: Float>(
    y_rows: &mut [E],
    o_first: usize,
    x: &[E],
    w: &[E],
    (batch, inputs, _): (usize, usize, usize),
) {
    for (g, y_group) in y_rows.chunks_mut(ROWS * batch).enumerate() {
        let o0 = o_first + g * ROWS;
        let rows = y_group.len() / batch;
        for i0 in (0..inputs).step_by(FORWARD_BLOCK) {
            let i1 = (i0 + FORWARD_BLOCK).min(inputs);
            for b in 0..batch {
                let x_b = &x[b * inputs + i0..b * inputs + i1];
                for r in 0..rows {
                    y_group[r * batch + b] += dot::<16, E>(x_b, &w[(o0 + r) * inputs + i0..(o0 + r) * inputs + i1]);
                }
            }
        }
    }
}

/// `dx[b, i] += Σ_o dy[b, o] · W[o, i]` for a small batch: the input columns go in bands of
/// at most [`INPUT_GRAD_BAND`], shared among the threads; within a band, four weight rows at a
/// time are scaled into each sample's slice of `dx`, so the weight streams row after row and the
/// band's `dx` is read and written once per four rows, from L2.
fn small_batch_input_grad<E: Float>(dx: &mut [E], dy: &[E], w: &[E], (batch, inputs, outputs): (usize, usize, usize)) {
    let band = inputs.div_ceil(threads()).clamp(1, INPUT_GRAD_BAND);
    let parts: Vec<Vec<E>> = (0..inputs.div_ceil(band))
        .into_par_iter()
        .map(|t| {
            let (i0, i1) = (t * band, ((t + 1) * band).min(inputs));
            let mut acc = vec![E::zero(); batch * (i1 - i0)];
            input_grad_band(&mut acc, (i0, i1), dy, w, (batch, inputs, outputs));
            acc
        })
        .collect();
    for (t, acc) in parts.iter().enumerate() {
        let i0 = t * band;
        let n = acc.len() / batch.max(1);
        for (b, acc_b) in acc.chunks_exact(n.max(1)).enumerate() {
            super::add_assign(&mut dx[b * inputs + i0..b * inputs + i0 + n], acc_b);
        }
    }
}

/// Input-gradient columns per band: the band's `[B, band]` slice of `dx` (320 KB at batch 10)
/// stays in L2.
const INPUT_GRAD_BAND: usize = 8192;

simd_dispatch! {
    /// One band `[i0, i1)` of the input gradient, `acc` `[B, i1 − i0]`.
    fn input_grad_band => input_grad_band_body(acc: &mut [E], cols: (usize, usize), dy: &[E], w: &[E], sizes: (usize, usize, usize))
}

#[inline(always)]
fn input_grad_band_body<E: Float>(
    acc: &mut [E],
    (i0, i1): (usize, usize),
    dy: &[E],
    w: &[E],
    (_, inputs, outputs): (usize, usize, usize),
) {
    let n = i1 - i0;
    for o0 in (0..outputs).step_by(ROWS) {
        let rows = ROWS.min(outputs - o0);
        let row = |r: usize| &w[(o0 + r) * inputs + i0..(o0 + r) * inputs + i1];
        for (b, acc_b) in acc.chunks_exact_mut(n).enumerate() {
            let g = |r: usize| dy[b * outputs + o0 + r];
            if rows == ROWS {
                let (g0, g1, g2, g3) = (g(0), g(1), g(2), g(3));
                let (w0, w1, w2, w3) = (row(0), row(1), row(2), row(3));
                for j in 0..n {
                    acc_b[j] += g0 * w0[j] + g1 * w1[j] + g2 * w2[j] + g3 * w3[j];
                }
            } else {
                for r in 0..rows {
                    let (gr, wr) = (g(r), row(r));
                    for (a, &wv) in acc_b.iter_mut().zip(wr) {
                        *a += gr * wv;
                    }
                }
            }
        }
    }
}

/// Input columns per block of the f32 forward pass: the block of every sample's inputs fills at
/// most [`F32_BLOCK_BYTES`] of L1, from where it is read once per weight row.
fn f32_block(batch: usize) -> usize {
    (F32_BLOCK_BYTES / (4 * batch.max(1))).max(64) / 8 * 8
}

/// Room for the samples' block in the 32 KB L1 data cache, leaving the rest to the weight lines.
const F32_BLOCK_BYTES: usize = 20 * 1024;

/// Samples per register group in the f32 forward pass: one `ymm` sum each, with registers left
/// for the weight vector and an input vector, out of AVX2's 16.
const F32_GROUP: usize = 10;

/// How many rows ahead the f32 forward pass prefetches the weight: its rows are read in pieces of
/// a block's width (2 KB at batch 10), too short for the hardware prefetcher to follow each one.
const PREFETCH_ROWS: usize = 2;

/// Column ranges of `0..inputs` for the threads, multiples of 8 wide but the last.
fn column_ranges(inputs: usize) -> Vec<std::ops::Range<usize>> {
    let per = inputs.div_ceil(threads()).next_multiple_of(8).max(8);
    (0..inputs).step_by(per).map(|i0| i0..(i0 + per).min(inputs)).collect()
}

/// [`small_batch_forward`] for f32 with AVX2 and FMA: threads split the input columns, each
/// streams its columns of every weight row once and sums into a `[O, B]` buffer of its own.
fn small_batch_forward_f32(y: &mut [f32], x: &[f32], w: &[f32], (batch, inputs, outputs): (usize, usize, usize)) {
    let parts: Vec<Vec<f32>> = column_ranges(inputs)
        .into_par_iter()
        .map(|cols| {
            let mut y_t = vec![0.0; outputs * batch];
            // SAFETY: the caller checked for AVX2 and FMA; the slices have the layer's sizes.
            unsafe { forward_cols_f32_avx2(&mut y_t, cols, x, w, (batch, inputs, outputs)) };
            y_t
        })
        .collect();
    for y_t in &parts {
        for (b, y_b) in y.chunks_exact_mut(outputs).enumerate() {
            for (o, v) in y_b.iter_mut().enumerate() {
                *v += y_t[o * batch + b];
            }
        }
    }
}

/// Columns `cols` of `y_t[o, b] += Σ_i x[b, i] · W[o, i]`, a block of columns at a time: each
/// row's piece of the block is loaded once and meets every sample's inputs from L1.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `x`, `w` and `y_t` must have the sizes' lengths.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_cols_f32_avx2(
    y_t: &mut [f32],
    cols: std::ops::Range<usize>,
    x: &[f32],
    w: &[f32],
    (batch, inputs, outputs): (usize, usize, usize),
) {
    assert!(cols.end <= inputs && x.len() == batch * inputs && w.len() == outputs * inputs);
    assert_eq!(y_t.len(), outputs * batch);
    let block = f32_block(batch);
    for i0 in cols.clone().step_by(block) {
        let n = block.min(cols.end - i0);
        for o in 0..outputs {
            let row = w.as_ptr().add(o * inputs + i0);
            let ahead = row.wrapping_add(PREFETCH_ROWS * inputs);
            for s0 in (0..batch).step_by(F32_GROUP) {
                let y_o = &mut y_t[o * batch + s0..];
                let x_s = x.as_ptr().add(s0 * inputs + i0);
                macro_rules! group {
                    ($($s:literal)*) => {
                        match F32_GROUP.min(batch - s0) {
                            $($s => row_dots_f32_avx2::<$s>(y_o, row, ahead, x_s, inputs, n),)*
                            _ => unreachable!("groups hold 1 to F32_GROUP samples"),
                        }
                    };
                }
                group!(1 2 3 4 5 6 7 8 9 10);
            }
        }
    }
}

/// `y[s] += Σ_j row[j] · x[s·stride + j]` for `j < n` and `S` samples; prefetches `ahead[..n]`.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `row` must be readable for `n` and `x` for
/// `(S − 1)·stride + n` elements; `y` must hold `S`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_dots_f32_avx2<const S: usize>(
    y: &mut [f32],
    row: *const f32,
    ahead: *const f32,
    x: *const f32,
    stride: usize,
    n: usize,
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); S];
    let full = n - n % 8;
    for j in (0..full).step_by(8) {
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(j).cast());
        let wv = _mm256_loadu_ps(row.add(j));
        for (s, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.add(s * stride + j)), *a);
        }
    }
    for (s, a) in acc.iter().enumerate() {
        let mut sum = horizontal_sum_avx(*a);
        for j in full..n {
            sum += *row.add(j) * *x.add(s * stride + j);
        }
        y[s] += sum;
    }
}

/// The sum of a register's eight lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn horizontal_sum_avx(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// The sizes of a fully connected layer's passes, with the kernels that [`linear`] runs
/// (public for the per-layer benchmark, as [`super::Conv2dGeometry`]). Every pass adds into
/// its output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearGeometry {
    /// Rows of `x` (samples).
    pub batch: usize,
    /// Input features.
    pub inputs: usize,
    /// Output features.
    pub outputs: usize,
}

impl LinearGeometry {
    fn sizes(&self) -> (usize, usize, usize) {
        (self.batch, self.inputs, self.outputs)
    }

    /// `y += x·Wᵀ` for `x` `[B, I]`, `weight` `[O, I]`, `y` `[B, O]`.
    pub fn forward_add<E: Float>(&self, y: &mut [E], x: &[E], weight: &[E]) {
        let (batch, inputs, outputs) = self.sizes();
        assert_eq!(
            (y.len(), x.len(), weight.len()),
            (batch * outputs, batch * inputs, outputs * inputs)
        );
        if batch <= SMALL_BATCH {
            match (has_avx2_fma(), as_f32_mut(y), as_f32(x), as_f32(weight)) {
                (true, Some(y), Some(x), Some(w)) => small_batch_forward_f32(y, x, w, self.sizes()),
                (_, _, _, _) => small_batch_forward(y, x, weight, self.sizes()),
            }
        } else {
            let w = MatRef::new(weight, outputs, inputs).t();
            matmul(y, MatRef::new(x, batch, inputs), w, true, threads());
        }
    }

    /// `dx += dy·W` for `dy` `[B, O]`.
    pub fn input_grad_add<E: Float>(&self, dx: &mut [E], dy: &[E], weight: &[E]) {
        let (batch, inputs, outputs) = self.sizes();
        assert_eq!(
            (dx.len(), dy.len(), weight.len()),
            (batch * inputs, batch * outputs, outputs * inputs)
        );
        if batch <= SMALL_BATCH {
            small_batch_input_grad(dx, dy, weight, self.sizes());
        } else {
            let w = MatRef::new(weight, outputs, inputs);
            matmul(dx, MatRef::new(dy, batch, outputs), w, true, threads());
        }
    }

    /// `dW += dyᵀ·x`: a GEMM, which already runs at PyTorch's speed here (it is bound by
    /// reading and writing `dW` once).
    pub fn weight_grad_add<E: Float>(&self, dw: &mut [E], dy: &[E], x: &[E]) {
        let (batch, inputs, outputs) = self.sizes();
        assert_eq!(
            (dw.len(), dy.len(), x.len()),
            (outputs * inputs, batch * outputs, batch * inputs)
        );
        let dy_m = MatRef::new(dy, batch, outputs);
        matmul(dw, dy_m.t(), MatRef::new(x, batch, inputs), true, threads());
    }

    /// `db += Σ_b dy[b]`.
    pub fn bias_grad_add<E: Float>(&self, db: &mut [E], dy: &[E]) {
        assert_eq!((db.len(), dy.len()), (self.outputs, self.batch * self.outputs));
        for row in dy.chunks_exact(self.outputs.max(1)) {
            super::add_assign(db, row);
        }
    }
}

/// `y = x·Wᵀ (+ b)` for `x` `[B, I]` and `weight` `[O, I]`, recorded on `x`'s tape so that
/// gradients flow to the input, the weight and the bias.
///
/// # Panics
/// When the weight's input size differs from the input's.
pub fn linear<B, I, Wi, O, E, T>(
    x: Tensor<(B, I), E, Cpu, T>,
    weight: &Tensor<(O, Wi), E, Cpu>,
    bias: Option<&Tensor<(O,), E, Cpu>>,
) -> Result<Tensor<(B, O), E, Cpu, T>, CpuError>
where
    B: Dim,
    I: Dim,
    Wi: Dim,
    O: Dim,
    E: Float,
    T: Tape<E, Cpu>,
{
    let (b, i) = *x.shape();
    let (o, wi) = *weight.shape();
    assert_eq!(
        i.size(),
        wi.size(),
        "linear: input has {} features, weight expects {}",
        i.size(),
        wi.size()
    );
    let g = LinearGeometry {
        batch: b.size(),
        inputs: i.size(),
        outputs: o.size(),
    };
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let x_ghost = x.ghost();
    let (x, w) = (RowMajor::new(&x), RowMajor::new(weight));
    let mut y = match bias {
        Some(bias) => RowMajor::new(bias).as_slice().repeat(g.batch),
        None => vec![E::zero(); g.batch * g.outputs],
    };
    g.forward_add(&mut y, x.as_slice(), w.as_slice());
    let out = dev.try_tensor_from_vec(y, (b, o))?;
    if T::OWNS_TAPE {
        let (w_ghost, out_ghost) = (weight.ghost(), out.ghost());
        let b_ghost = bias.map(|b| b.ghost());
        tape.add_backward_op(move |grads| {
            // Moved out rather than copied; put back below for anyone who reads it later.
            let dy = std::mem::take(&mut **grads.get_or_alloc_mut(&out_ghost)?);
            g.input_grad_add(grads.get_or_alloc_mut(&x_ghost)?, &dy, w.as_slice());
            g.weight_grad_add(grads.get_or_alloc_mut(&w_ghost)?, &dy, x.as_slice());
            if let Some(b_ghost) = b_ghost {
                g.bias_grad_add(grads.get_or_alloc_mut(&b_ghost)?, &dy);
            }
            **grads.get_or_alloc_mut(&out_ghost)? = dy;
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
