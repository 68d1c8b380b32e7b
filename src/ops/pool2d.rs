//! 2-D max and average pooling, and global average pooling.
//!
//! Planes (one channel of one sample) are independent, so they are spread over rayon's threads.
//! Max pooling keeps only the index of each window's maximum for backward; average pooling keeps
//! nothing but the geometry.

use super::{as_f32, as_f32_mut, has_avx2_fma, threads, window_output_size, Float, RowMajor};
use dfdx::prelude::*;
use rayon::prelude::*;

/// Sizes of a square-window pooling over `[B, C, H, W]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dGeometry {
    /// Batch size times channels: the number of independent planes.
    pub planes: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Window side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding on every side (ignored by max, counted as zeros by average).
    pub padding: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
}

impl Pool2dGeometry {
    /// `None` when the window does not fit, the stride is zero, or the padding exceeds half the
    /// window (PyTorch's rule: otherwise a window could lie entirely in the padding).
    pub fn new(
        planes: usize,
        (in_h, in_w): (usize, usize),
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Option<Self> {
        if 2 * padding > kernel {
            return None;
        }
        Some(Self {
            planes,
            in_h,
            in_w,
            kernel,
            stride,
            padding,
            out_h: window_output_size(in_h, kernel, stride, padding)?,
            out_w: window_output_size(in_w, kernel, stride, padding)?,
        })
    }

    /// Clipped input range `[lo, hi)` covered by the window starting at output index `o`.
    fn window(&self, o: usize, n: usize) -> (usize, usize) {
        let start = (o * self.stride) as isize - self.padding as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + self.kernel as isize).max(0) as usize).min(n);
        (lo, hi)
    }

    fn in_len(&self) -> usize {
        self.in_h * self.in_w
    }

    fn out_len(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Max-pool forward: outputs and, per output, the flat in-plane index of the maximum.
    pub fn max_forward<E: Float>(&self, x: &[E]) -> (Vec<E>, Vec<u32>) {
        assert_eq!(x.len(), self.planes * self.in_len(), "input length");
        let mut out = vec![E::zero(); self.planes * self.out_len()];
        let mut arg = vec![0u32; self.planes * self.out_len()];
        let chunk = self.planes.div_ceil(threads() * 4).max(1);
        out.par_chunks_mut(chunk * self.out_len())
            .zip(arg.par_chunks_mut(chunk * self.out_len()))
            .zip(x.par_chunks(chunk * self.in_len()))
            .for_each(|((out, arg), x)| {
                for ((out, arg), x) in out
                    .chunks_exact_mut(self.out_len())
                    .zip(arg.chunks_exact_mut(self.out_len()))
                    .zip(x.chunks_exact(self.in_len()))
                {
                    if self.kernel == 2 && self.stride == 2 && self.padding == 0 {
                        if let (Some(x), Some(out)) = (as_f32(x), as_f32_mut(out)) {
                            if has_avx2_fma() {
                                // SAFETY: the CPU has AVX2; the slices are one plane each.
                                unsafe { self.max_plane_2x2_f32_avx2(x, out, arg) };
                                continue;
                            }
                        }
                        self.max_plane_2x2(x, out, arg);
                    } else {
                        self.max_plane(x, out, arg);
                    }
                }
            });
        (out, arg)
    }

    /// One plane of [`Self::max_forward`], any window.
    fn max_plane<E: Float>(&self, x: &[E], out: &mut [E], arg: &mut [u32]) {
        for oy in 0..self.out_h {
            let (y0, y1) = self.window(oy, self.in_h);
            for ox in 0..self.out_w {
                let (x0, x1) = self.window(ox, self.in_w);
                let mut best = E::neg_infinity();
                let mut best_at = y0 * self.in_w + x0;
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        let v = x[iy * self.in_w + ix];
                        // NaN wins, so it propagates like PyTorch's max pooling.
                        if v > best || v.is_nan() {
                            best = v;
                            best_at = iy * self.in_w + ix;
                        }
                    }
                }
                out[oy * self.out_w + ox] = best;
                arg[oy * self.out_w + ox] = best_at as u32;
            }
        }
    }

    /// One plane of [`Self::max_forward`] for 2×2 windows at stride 2 without padding (every
    /// pooling of LeNet and AlexNet): no window is clipped, so each output reads two pairs of
    /// neighbours from two rows, with no window arithmetic per output. Same scan order and tie
    /// and NaN rules as [`Self::max_plane`].
    fn max_plane_2x2<E: Float>(&self, x: &[E], out: &mut [E], arg: &mut [u32]) {
        let w = self.in_w;
        for ((oy, out_row), arg_row) in out
            .chunks_exact_mut(self.out_w)
            .enumerate()
            .zip(arg.chunks_exact_mut(self.out_w))
        {
            for (ox, (o, a)) in out_row.iter_mut().zip(arg_row.iter_mut()).enumerate() {
                let (best, at) = max_2x2(x, 2 * oy * w + 2 * ox, w);
                *o = best;
                *a = at as u32;
            }
        }
    }

    /// [`Self::max_plane_2x2`] for f32 with AVX2, 8 outputs at a time: the even and odd columns
    /// of both rows are separated by shuffles, and each comparison of the scalar loop becomes a
    /// blend of values and indices under the same rule (`v > best || v is NaN`), so ties and
    /// NaN resolve as there. The scalar loop's branches mispredict on half of random inputs: it
    /// took 7 ms for LeNet-PALM's first pooling (60 planes of 220×220) on two cores.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn max_plane_2x2_f32_avx2(&self, x: &[f32], out: &mut [f32], arg: &mut [u32]) {
        use std::arch::x86_64::*;
        let w = self.in_w;
        assert!(x.len() >= 2 * self.out_h * w && w >= 2 * self.out_w, "plane sizes");
        assert!(
            out.len() == self.out_len() && arg.len() == self.out_len(),
            "output sizes"
        );
        // Even and odd elements of 16 consecutive floats, each in order: the shuffles pick within
        // 128-bit lanes, the permute puts the lanes' halves back in sequence.
        let split = |p: *const f32| {
            let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
            let even = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
                _mm256_shuffle_ps::<0b10_00_10_00>(a, b),
            )));
            let odd = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
                _mm256_shuffle_ps::<0b11_01_11_01>(a, b),
            )));
            (even, odd)
        };
        let steps = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        let full = self.out_w - self.out_w % 8;
        for oy in 0..self.out_h {
            let top = 2 * oy * w;
            let (r0, r1) = (x.as_ptr().add(top), x.as_ptr().add(top + w));
            for ox in (0..full).step_by(8) {
                let (a, b) = split(r0.add(2 * ox));
                let (c, d) = split(r1.add(2 * ox));
                let at0 = _mm256_add_epi32(_mm256_set1_epi32((top + 2 * ox) as i32), steps);
                let (mut best, mut at) = (a, at0);
                for (v, offset) in [(b, 1), (c, w), (d, w + 1)] {
                    let wins = _mm256_or_ps(
                        _mm256_cmp_ps::<_CMP_GT_OQ>(v, best),
                        _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v),
                    );
                    best = _mm256_blendv_ps(best, v, wins);
                    let pos = _mm256_add_epi32(at0, _mm256_set1_epi32(offset as i32));
                    at = _mm256_castps_si256(_mm256_blendv_ps(
                        _mm256_castsi256_ps(at),
                        _mm256_castsi256_ps(pos),
                        wins,
                    ));
                }
                _mm256_storeu_ps(out.as_mut_ptr().add(oy * self.out_w + ox), best);
                _mm256_storeu_si256(arg.as_mut_ptr().add(oy * self.out_w + ox).cast(), at);
            }
            for ox in full..self.out_w {
                let (best, at) = max_2x2(x, top + 2 * ox, w);
                out[oy * self.out_w + ox] = best;
                arg[oy * self.out_w + ox] = at as u32;
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn max_plane_2x2_f32_avx2(&self, _: &[f32], _: &mut [f32], _: &mut [u32]) {
        unreachable!("has_avx2_fma() is false off x86_64")
    }

    /// Max-pool backward: routes each output gradient to its window's maximum.
    pub fn max_backward<E: Float>(&self, arg: &[u32], dy: &[E]) -> Vec<E> {
        let mut dx = vec![E::zero(); self.planes * self.in_len()];
        dx.par_chunks_mut(self.in_len().max(1))
            .zip(
                arg.par_chunks(self.out_len().max(1))
                    .zip(dy.par_chunks(self.out_len().max(1))),
            )
            .for_each(|(dx, (arg, dy))| {
                for (&i, &g) in arg.iter().zip(dy) {
                    dx[i as usize] += g;
                }
            });
        dx
    }

    /// Average-pool forward; the divisor is always `kernel²` (padding counts as zeros, PyTorch's
    /// default `count_include_pad=True`).
    pub fn avg_forward<E: Float>(&self, x: &[E]) -> Vec<E> {
        assert_eq!(x.len(), self.planes * self.in_len(), "input length");
        let scale = E::one() / E::from(self.kernel * self.kernel).expect("small integer");
        let mut out = vec![E::zero(); self.planes * self.out_len()];
        out.par_chunks_mut(self.out_len().max(1))
            .zip(x.par_chunks(self.in_len().max(1)))
            .for_each(|(out, x)| {
                for oy in 0..self.out_h {
                    let (y0, y1) = self.window(oy, self.in_h);
                    for ox in 0..self.out_w {
                        let (x0, x1) = self.window(ox, self.in_w);
                        let mut sum = E::zero();
                        for iy in y0..y1 {
                            for v in &x[iy * self.in_w + x0..iy * self.in_w + x1] {
                                sum += *v;
                            }
                        }
                        out[oy * self.out_w + ox] = sum * scale;
                    }
                }
            });
        out
    }

    /// Average-pool backward: spreads each output gradient evenly over its window.
    pub fn avg_backward<E: Float>(&self, dy: &[E]) -> Vec<E> {
        let scale = E::one() / E::from(self.kernel * self.kernel).expect("small integer");
        let mut dx = vec![E::zero(); self.planes * self.in_len()];
        dx.par_chunks_mut(self.in_len().max(1))
            .zip(dy.par_chunks(self.out_len().max(1)))
            .for_each(|(dx, dy)| {
                for oy in 0..self.out_h {
                    let (y0, y1) = self.window(oy, self.in_h);
                    for ox in 0..self.out_w {
                        let (x0, x1) = self.window(ox, self.in_w);
                        let g = dy[oy * self.out_w + ox] * scale;
                        for iy in y0..y1 {
                            for v in &mut dx[iy * self.in_w + x0..iy * self.in_w + x1] {
                                *v += g;
                            }
                        }
                    }
                }
            });
        dx
    }
}

fn pool_geometry<B: Dim, C: Dim, H: Dim, W: Dim, Ho: Dim, Wo: Dim>(
    op: &str,
    (b, c, h, w): (B, C, H, W),
    kernel: usize,
    stride: usize,
    padding: usize,
    out_hw: (Ho, Wo),
) -> Pool2dGeometry {
    let g =
        Pool2dGeometry::new(b.size() * c.size(), (h.size(), w.size()), kernel, stride, padding).unwrap_or_else(|| {
            panic!(
                "{op}: window {kernel} (stride {stride}, padding {padding}) does not fit a {}x{} input",
                h.size(),
                w.size()
            )
        });
    assert_eq!(
        (g.out_h, g.out_w),
        (out_hw.0.size(), out_hw.1.size()),
        "{op}: declared output size differs from the computed one"
    );
    g
}

/// A pooled batch: same batch and channels, new height and width.
type Pooled<B, C, Ho, Wo, E, T> = Result<Tensor<(B, C, Ho, Wo), E, Cpu, T>, CpuError>;

/// Max pooling with a `kernel × kernel` window over `[B, C, H, W]`, recorded on the tape.
///
/// `out_hw` must equal `(n + 2·padding − kernel) / stride + 1` along each axis.
///
/// # Panics
/// When `out_hw` does not match, or the window does not fit.
pub fn max_pool2d<B: Dim, C: Dim, H: Dim, W: Dim, Ho: Dim, Wo: Dim, E: Float, T: Tape<E, Cpu>>(
    x: Tensor<(B, C, H, W), E, Cpu, T>,
    kernel: usize,
    stride: usize,
    padding: usize,
    out_hw: (Ho, Wo),
) -> Pooled<B, C, Ho, Wo, E, T> {
    let shape = *x.shape();
    let g = pool_geometry("max_pool2d", shape, kernel, stride, padding, out_hw);
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let (out, arg) = g.max_forward(RowMajor::new(&x).as_slice());
    let out = dev.try_tensor_from_vec(out, (shape.0, shape.1, out_hw.0, out_hw.1))?;
    if T::OWNS_TAPE {
        let x_ghost = x.ghost();
        let out_ghost = out.ghost();
        tape.add_backward_op(move |grads| {
            let dx = g.max_backward(&arg, grads.get_or_alloc_mut(&out_ghost)?);
            super::add_assign(grads.get_or_alloc_mut(&x_ghost)?, &dx);
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}

/// Average pooling with a `kernel × kernel` window over `[B, C, H, W]`, recorded on the tape.
/// Padding counts as zeros in the average (divisor `kernel²`).
///
/// # Panics
/// When `out_hw` does not match, or the window does not fit.
pub fn avg_pool2d<B: Dim, C: Dim, H: Dim, W: Dim, Ho: Dim, Wo: Dim, E: Float, T: Tape<E, Cpu>>(
    x: Tensor<(B, C, H, W), E, Cpu, T>,
    kernel: usize,
    stride: usize,
    padding: usize,
    out_hw: (Ho, Wo),
) -> Pooled<B, C, Ho, Wo, E, T> {
    let shape = *x.shape();
    let g = pool_geometry("avg_pool2d", shape, kernel, stride, padding, out_hw);
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let out = dev.try_tensor_from_vec(
        g.avg_forward(RowMajor::new(&x).as_slice()),
        (shape.0, shape.1, out_hw.0, out_hw.1),
    )?;
    if T::OWNS_TAPE {
        let x_ghost = x.ghost();
        let out_ghost = out.ghost();
        tape.add_backward_op(move |grads| {
            let dx = g.avg_backward(grads.get_or_alloc_mut(&out_ghost)?);
            super::add_assign(grads.get_or_alloc_mut(&x_ghost)?, &dx);
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}

/// Global average pooling: `[B, C, H, W]` → `[B, C]`, the mean of each plane.
pub fn global_avg_pool2d<B: Dim, C: Dim, H: Dim, W: Dim, E: Float, T: Tape<E, Cpu>>(
    x: Tensor<(B, C, H, W), E, Cpu, T>,
) -> Result<Tensor<(B, C), E, Cpu, T>, CpuError> {
    let (b, c, h, w) = *x.shape();
    let plane = h.size() * w.size();
    assert!(plane > 0, "global_avg_pool2d: empty {}x{} input", h.size(), w.size());
    let scale = E::one() / E::from(plane).expect("plane size fits the float type");
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let means: Vec<E> = RowMajor::new(&x)
        .as_slice()
        .chunks_exact(plane)
        .map(|p| p.iter().fold(E::zero(), |a, v| a + *v) * scale)
        .collect();
    let out = dev.try_tensor_from_vec(means, (b, c))?;
    if T::OWNS_TAPE {
        let x_ghost = x.ghost();
        let out_ghost = out.ghost();
        tape.add_backward_op(move |grads| {
            let dy = grads.get_or_alloc_mut(&out_ghost)?.to_vec();
            let dx = grads.get_or_alloc_mut(&x_ghost)?;
            for (plane_grad, g) in dx.chunks_exact_mut(plane).zip(dy) {
                plane_grad.iter_mut().for_each(|v| *v += g * scale);
            }
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}

/// The maximum of the 2×2 window whose top-left element is `x[at]` in rows `w` long, and its
/// index: scanned row by row, a later value wins when it is larger or NaN, so the first of tied
/// maxima and the last NaN are kept (NaN propagates, as in PyTorch's max pooling).
#[inline(always)]
fn max_2x2<E: Float>(x: &[E], at: usize, w: usize) -> (E, usize) {
    let mut best = (x[at], at);
    for pos in [at + 1, at + w, at + w + 1] {
        if x[pos] > best.0 || x[pos].is_nan() {
            best = (x[pos], pos);
        }
    }
    best
}
