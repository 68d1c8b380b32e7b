//! Direct stride-1 convolution for layers with few output channels (LeNet-PALM's first two).
//!
//! With 6 or 16 filters the GEMM's M dimension is too small to use the machine, and im2col of a
//! 224×224 image writes 25× the input. Here a tile of 8 output channels × 32 output columns is
//! summed in registers over every input channel and kernel tap, reading the zero-padded input
//! directly; the input gradient is the same loop run on `dy` with the flipped kernel. The generic
//! loops (plain Rust over fixed-size arrays, for f64 and for CPUs without AVX2) define the
//! order of work; f32 has kernels with AVX-512 or AVX2 + FMA intrinsics that follow it, picked
//! at run time and tested against the naive f64 reference in f32.

use super::conv2d::Conv2dGeometry;

/// Output channels whose sums one tile keeps in registers.
pub(crate) const OUT_BLOCK: usize = 8;
/// Output columns per tile: two AVX-512 registers of `f32`.
const STRIP: usize = 32;
/// [`Conv2dGeometry::tap_stride`] rounds the output channels up to a multiple of this: of every
/// output block size the kernels use (8; and 3, 4 or 6 on AVX2).
const TAP_STRIDE_MULTIPLE: usize = 24;
use super::{as_f32, dot, has_avx2_fma, Float};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Whether the CPU has AVX-512F, for which the direct loops have f32 kernels of their own.
pub(crate) fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the direct loops run f32 kernels written with intrinsics (AVX-512, or AVX2 and FMA)
/// rather than the portable loops, which are several times slower.
pub(crate) fn direct_kernels_vectorised() -> bool {
    has_avx512f() || has_avx2_fma()
}

/// Runs `body` with AVX2 and FMA enabled when the CPU has them.
macro_rules! dispatch {
    ($fast:ident, $portable:ident, ($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports the features `$fast` is compiled for.
                return unsafe { $fast($($arg),*) };
            }
        }
        $portable($($arg),*)
    }};
}

impl Conv2dGeometry {
    /// The column range `[lo, hi)` of output positions whose input column `ox + kj − padding`
    /// is inside the image, for stride 1.
    fn cols(&self, kj: usize) -> (usize, usize) {
        let p = self.padding;
        let lo = p.saturating_sub(kj);
        let hi = (self.in_w + p).saturating_sub(kj).min(self.out_w);
        (lo.min(hi), hi)
    }

    /// The row range of output positions whose input row `oy + ki − padding` is inside.
    fn rows(&self, ki: usize) -> (usize, usize) {
        let p = self.padding;
        let lo = p.saturating_sub(ki);
        let hi = (self.in_h + p).saturating_sub(ki).min(self.out_h);
        (lo.min(hi), hi)
    }

    /// Whether [`Self::direct_forward`] and friends are the faster choice: a geometry they
    /// handle ([`Self::direct_applies`]) with few filters. With the f32 kernels for AVX-512 or
    /// AVX2, up to 16: LeNet-PALM's conv2 (16 filters, batch 10) took 3.45 / 4.41 / 8.66 ms
    /// (forward / input / weight gradient) on the quiet Zen 4 machine, and 8.1–8.7 / 3.8–4.6 /
    /// 4.2–5.3 ms on the Zen 3 machine (AVX2) against im2col's 8.5–10.4 / 7.1–8.2 / 9.3–9.8.
    /// With the portable loops im2col wins from 9 filters: 24.2 / 27.9 / 20.4 ms direct against
    /// 12.0 / 10.2 / 11.5 on the Zen 3 machine. At 120 filters (LeNet-PALM's conv3) im2col wins
    /// on AVX2 too (input gradient 34 ms direct against 13–14).
    pub(crate) fn prefers_direct(&self) -> bool {
        let max_filters = if direct_kernels_vectorised() { 16 } else { OUT_BLOCK };
        self.direct_applies() && self.out_channels <= max_filters
    }

    /// Whether the direct loops can compute this geometry at all, whatever the filter count:
    /// stride 1, a square kernel larger than 1×1 and padding smaller than the kernel (so that the
    /// input gradient is a stride-1 convolution too, see [`Self::transposed`]).
    pub(crate) fn direct_applies(&self) -> bool {
        self.stride == 1 && self.kernel_h == self.kernel_w && self.kernel_h > 1 && self.padding < self.kernel_h
    }

    /// One sample's forward pass, `[O, Ho, Wo]`, from its zero-padded input `xp`
    /// (`[C, Hp, Wp]`, see [`Self::padded_input`]) and the weight as `[C·Kh·Kw, Op]`
    /// (see [`Self::weight_by_tap`]).
    ///
    /// A tile of [`OUT_BLOCK`] output channels × [`STRIP`] output columns stays in registers
    /// while every input channel and kernel tap adds to it: each tap loads one strip of input
    /// and multiplies it by `OUT_BLOCK` broadcast weights, so the loop runs on FMAs rather than
    /// on loads and stores of the output, as a row-at-a-time AXPY would.
    #[inline(always)]
    fn direct_forward_sample<E: Float>(&self, xp: &[E], w_tap: &[E], bias: Option<&[E]>, y: &mut [MaybeUninit<E>]) {
        let (oh, ow, kh, kw) = (self.out_h, self.out_w, self.kernel_h, self.kernel_w);
        let (hp, wp) = self.padded_size();
        let op = self.tap_stride();
        for o0 in (0..self.out_channels).step_by(OUT_BLOCK) {
            for oy in 0..oh {
                for ox0 in (0..ow).step_by(STRIP) {
                    let mut acc = [[E::zero(); STRIP]; OUT_BLOCK];
                    if let Some(bias) = bias {
                        for (o, a) in acc.iter_mut().enumerate().take(self.out_channels - o0) {
                            a.fill(bias[o0 + o]);
                        }
                    }
                    for c in 0..self.in_channels {
                        for ki in 0..kh {
                            let row = &xp[(c * hp + oy + ki) * wp + ox0..];
                            for kj in 0..kw {
                                let xs: &[E; STRIP] = row[kj..kj + STRIP].try_into().expect("strip");
                                let tap = (c * kh + ki) * kw + kj;
                                let ws: &[E; OUT_BLOCK] =
                                    w_tap[tap * op + o0..][..OUT_BLOCK].try_into().expect("block");
                                for (a, &wv) in acc.iter_mut().zip(ws) {
                                    for (a, &xv) in a.iter_mut().zip(xs) {
                                        *a += wv * xv;
                                    }
                                }
                            }
                        }
                    }
                    let width = STRIP.min(ow - ox0);
                    for (o, a) in acc.iter().enumerate().take(self.out_channels - o0) {
                        let dst = &mut y[((o0 + o) * oh + oy) * ow + ox0..][..width];
                        for (d, &v) in dst.iter_mut().zip(a) {
                            d.write(v);
                        }
                    }
                }
            }
        }
    }

    /// Height and width of [`Self::padded_input`]'s planes: the padding on every side, plus
    /// [`STRIP`] zero columns on the right so that the last strip of a row may read past the
    /// image.
    fn padded_size(&self) -> (usize, usize) {
        (self.in_h + 2 * self.padding, self.in_w + 2 * self.padding + STRIP)
    }

    /// One sample `[C, H, W]` copied into zero-padded planes `[C, Hp, Wp]`.
    fn padded_input<E: Float>(&self, x: &[E]) -> Vec<E> {
        let (hp, wp) = self.padded_size();
        let mut xp = vec![E::zero(); self.in_channels * hp * wp];
        self.pad_into(x, &mut xp);
        xp
    }

    /// Copies samples `[.., C, H, W]` into zeroed padded planes `[.., C, Hp, Wp]`.
    fn pad_into<E: Float>(&self, x: &[E], xp: &mut [E]) {
        let (hp, wp) = self.padded_size();
        let (h, w, p) = (self.in_h, self.in_w, self.padding);
        for (plane, padded) in x.chunks_exact(h * w).zip(xp.chunks_exact_mut(hp * wp)) {
            for (row, dst) in plane.chunks_exact(w).zip(padded[p * wp..].chunks_exact_mut(wp)) {
                dst[p..p + w].copy_from_slice(row);
            }
        }
    }

    /// Every sample of the batch padded as [`Self::padded_input`], one after another.
    fn padded_batch<E: Float>(&self, x: &[E]) -> Vec<E> {
        let (hp, wp) = self.padded_size();
        let (in_len, xp_len) = (self.in_channels * self.in_h * self.in_w, self.in_channels * hp * wp);
        let mut xp = vec![E::zero(); self.batch * xp_len];
        xp.par_chunks_mut(xp_len.max(1))
            .zip(x.par_chunks(in_len.max(1)))
            .for_each(|(dst, xb)| self.pad_into(xb, dst));
        xp
    }

    /// The row length `Op` of [`Self::weight_by_tap`]: the output channels rounded up to a
    /// multiple of [`TAP_STRIDE_MULTIPLE`], so that every kernel's block of output channels,
    /// whatever its size, reads weights inside the row.
    fn tap_stride(&self) -> usize {
        self.out_channels.next_multiple_of(TAP_STRIDE_MULTIPLE)
    }

    /// The weight `[O, C, Kh, Kw]` regrouped by tap, `[C·Kh·Kw, Op]` ([`Self::tap_stride`]),
    /// the padding channels zero: each tap's weights for a block of output channels are adjacent.
    fn weight_by_tap<E: Float>(&self, weight: &[E]) -> Vec<E> {
        let taps = self.patch_len();
        let op = self.tap_stride();
        let mut w_tap = vec![E::zero(); taps * op];
        for (o, filter) in weight.chunks_exact(taps).enumerate() {
            for (t, &v) in filter.iter().enumerate() {
                w_tap[t * op + o] = v;
            }
        }
        w_tap
    }

    /// The geometry whose forward pass is this one's input gradient (stride 1): output
    /// channels and input channels swap, and the padding becomes `k − 1 − p`, so that the
    /// "full" correlation of `dy` with the flipped kernel comes out `H × W`.
    fn transposed(&self) -> Self {
        assert_eq!(
            self.kernel_h, self.kernel_w,
            "direct input gradient needs a square kernel"
        );
        Conv2dGeometry::new(
            self.batch,
            self.out_channels,
            (self.out_h, self.out_w),
            self.in_channels,
            (self.kernel_h, self.kernel_w),
            1,
            self.kernel_h - 1 - self.padding,
        )
        .expect("the transposed geometry of a valid stride-1 convolution fits")
    }

    /// The weight `[O, C, Kh, Kw]` as the transposed geometry's weight `[C, O, Kh, Kw]`, each
    /// kernel flipped in both axes.
    fn flipped_transposed_weight<E: Float>(&self, weight: &[E]) -> Vec<E> {
        let (o_n, c_n, kh, kw) = (self.out_channels, self.in_channels, self.kernel_h, self.kernel_w);
        let mut out = vec![E::zero(); weight.len()];
        for o in 0..o_n {
            for c in 0..c_n {
                for i in 0..kh {
                    for j in 0..kw {
                        out[((c * o_n + o) * kh + (kh - 1 - i)) * kw + (kw - 1 - j)] =
                            weight[((o * c_n + c) * kh + i) * kw + j];
                    }
                }
            }
        }
        out
    }

    /// Weight gradient of output channel `o` over all samples, `[C, Kh, Kw]`.
    #[inline(always)]
    fn direct_weight_grad_channel<E: Float>(&self, x: &[E], dy: &[E], o: usize, dw: &mut [E]) {
        let (ih, iw, oh, ow) = (self.in_h, self.in_w, self.out_h, self.out_w);
        let (kh, kw, p) = (self.kernel_h, self.kernel_w, self.padding);
        let in_len = self.in_channels * ih * iw;
        let out_len = self.out_channels * oh * ow;
        dw.fill(E::zero());
        for b in 0..self.batch {
            let dy_plane = &dy[b * out_len + o * oh * ow..][..oh * ow];
            for c in 0..self.in_channels {
                let x_plane = &x[b * in_len + c * ih * iw..][..ih * iw];
                for ki in 0..kh {
                    let (y_lo, y_hi) = self.rows(ki);
                    for kj in 0..kw {
                        let (lo, hi) = self.cols(kj);
                        let mut acc = E::zero();
                        for oy in y_lo..y_hi {
                            let x_row = &x_plane[(oy + ki - p) * iw..][..iw];
                            acc += dot::<8, E>(&dy_plane[oy * ow + lo..oy * ow + hi], &x_row[lo + kj - p..hi + kj - p]);
                        }
                        dw[(c * kh + ki) * kw + kj] += acc;
                    }
                }
            }
        }
    }

    /// Forward pass, `[B, O, Ho, Wo]`, the bias (if any) added as the sums start. Every output is
    /// written once by the kernels, into memory that is not zeroed first: a zeroed allocation
    /// of LeNet-PALM's first output (11.6 MB) is one thread's memset, and adding the bias after
    /// another pass over it.
    pub(crate) fn direct_forward<E: Float>(&self, x: &[E], weight: &[E], bias: Option<&[E]>) -> Vec<E> {
        let n = self.batch * self.out_channels * self.out_pixels();
        let mut y = Vec::with_capacity(n);
        let in_len = self.in_channels * self.in_h * self.in_w;
        let out_len = self.out_channels * self.out_pixels();
        let w_tap = self.weight_by_tap(weight);
        y.spare_capacity_mut()[..n]
            .par_chunks_mut(out_len.max(1))
            .zip(x.par_chunks(in_len.max(1)))
            .for_each(|(yb, xb)| forward_sample(self, &self.padded_input(xb), &w_tap, bias, yb));
        // SAFETY: `forward_sample` writes every element of each sample's output.
        unsafe { y.set_len(n) };
        y
    }

    /// Input gradient, `[B, C, H, W]`: the forward pass of [`Self::transposed`] over `dy`, whose
    /// filters are this layer's input channels.
    pub(crate) fn direct_input_grad<E: Float>(&self, weight: &[E], dy: &[E]) -> Vec<E> {
        self.transposed()
            .direct_forward(dy, &self.flipped_transposed_weight(weight), None)
    }

    /// Weight gradient, `[O, C, Kh, Kw]`.
    pub(crate) fn direct_weight_grad<E: Float>(&self, x: &[E], dy: &[E]) -> Vec<E> {
        #[cfg(target_arch = "x86_64")]
        if let (Some(x), Some(dy)) = (as_f32(x), as_f32(dy)) {
            let kernel: Option<(usize, WeightGradTask)> = if has_avx512f() {
                Some((GRAD_OUT_BLOCK, weight_grad_task_f32_avx512))
            } else if has_avx2_fma() {
                Some((AVX2_GRAD_OUT_BLOCK, weight_grad_task_f32_avx2))
            } else {
                None
            };
            if let Some((out_block, task)) = kernel {
                let dw = self.weight_grad_f32(x, dy, out_block, task);
                // SAFETY: E is f32 (as_f32 said so): the Vec's allocation is handed over whole,
                // same layout.
                let mut dw = std::mem::ManuallyDrop::new(dw);
                return unsafe { Vec::from_raw_parts(dw.as_mut_ptr().cast::<E>(), dw.len(), dw.capacity()) };
            }
        }
        let per_filter = self.patch_len();
        let mut dw = vec![E::zero(); self.out_channels * per_filter];
        dw.par_chunks_mut(per_filter.max(1))
            .enumerate()
            .for_each(|(o, dwo)| weight_grad_channel(self, x, dy, o, dwo));
        dw
    }

    /// [`Self::direct_weight_grad`] in f32 by one of the intrinsics kernels (`task`, for a CPU
    /// that has its features): one task per (block of `out_block` output channels, input
    /// channel, run of samples), over the zero-padded inputs, the runs' sums added at the end.
    /// LeNet-PALM's conv1 has only 3 × 3 (block, channel) pairs with AVX2's blocks of 2, too
    /// few to keep two threads busy without splitting the batch.
    #[cfg(target_arch = "x86_64")]
    fn weight_grad_f32(&self, x: &[f32], dy: &[f32], out_block: usize, task: WeightGradTask) -> Vec<f32> {
        let xp = self.padded_batch(x);
        let pairs = self.out_channels.div_ceil(out_block) * self.in_channels;
        let runs = MIN_WEIGHT_GRAD_TASKS.div_ceil(pairs).clamp(1, self.batch.max(1));
        let per_run = self.batch.div_ceil(runs).max(1);
        let runs = self.batch.div_ceil(per_run).max(1);
        let parts: Vec<Vec<f32>> = (0..pairs * runs)
            .into_par_iter()
            .map(|t| {
                let (pair, run) = (t / runs, t % runs);
                let (o0, c) = ((pair / self.in_channels) * out_block, pair % self.in_channels);
                let samples = run * per_run..((run + 1) * per_run).min(self.batch);
                // SAFETY: the caller checked that the CPU has the kernel's features.
                unsafe { task(self, &xp, dy, o0, c, samples) }
            })
            .collect();
        let taps = self.kernel_h * self.kernel_w;
        let mut dw = vec![0.0; self.out_channels * self.patch_len()];
        for (t, part) in parts.iter().enumerate() {
            let pair = t / runs;
            let (o0, c) = ((pair / self.in_channels) * out_block, pair % self.in_channels);
            for (o, taps_of_o) in part.chunks_exact(taps).enumerate() {
                for (d, &v) in dw[((o0 + o) * self.in_channels + c) * taps..][..taps]
                    .iter_mut()
                    .zip(taps_of_o)
                {
                    *d += v;
                }
            }
        }
        dw
    }
}

/// A weight-gradient kernel: `[outputs, Kh, Kw]` for output channels `o0 ..` and input channel
/// `c`, summed over a run of samples.
#[cfg(target_arch = "x86_64")]
type WeightGradTask = unsafe fn(&Conv2dGeometry, &[f32], &[f32], usize, usize, std::ops::Range<usize>) -> Vec<f32>;

/// [`Conv2dGeometry::weight_grad_f32`] splits the batch until there are at least this many
/// tasks, so that two or more threads end within a task of each other.
#[cfg(target_arch = "x86_64")]
const MIN_WEIGHT_GRAD_TASKS: usize = 24;

/// Output channels per weight-gradient task: their gradient rows are loaded once per strip and
/// multiplied by [`GRAD_TAPS`] shifted input strips, so 4 × 5 sums live in `zmm` registers.
#[cfg(target_arch = "x86_64")]
const GRAD_OUT_BLOCK: usize = 4;
/// Kernel columns summed per pass over the data in the weight-gradient task.
#[cfg(target_arch = "x86_64")]
const GRAD_TAPS: usize = 5;

/// Weight gradients `[outputs, Kh, Kw]` of output channels `o0 ..` (up to [`GRAD_OUT_BLOCK`]) for
/// input channel `c`, summed over `samples`: `Σ_b Σ_(oy,ox) dy[b,o,oy,ox] · xp[b,c,oy+ki,ox+kj]`.
///
/// # Safety
/// The CPU must have AVX-512F. `xp` holds every sample's padded input ([`Conv2dGeometry::padded_input`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_grad_task_f32_avx512(
    g: &Conv2dGeometry,
    xp: &[f32],
    dy: &[f32],
    o0: usize,
    c: usize,
    samples: std::ops::Range<usize>,
) -> Vec<f32> {
    use std::arch::x86_64::*;
    const LANES: usize = 16;
    let (oh, ow, kh, kw) = (g.out_h, g.out_w, g.kernel_h, g.kernel_w);
    let (hp, wp) = g.padded_size();
    let outputs = GRAD_OUT_BLOCK.min(g.out_channels - o0);
    let (xp_len, out_len) = (g.in_channels * hp * wp, g.out_channels * oh * ow);
    // Reads stay inside: a strip starts at most at ow − 1 and, shifted by kj ≤ kw − 1, reads 16
    // columns of a padded row, within the STRIP (32) zero columns past iw + 2p; dy reads are
    // masked to the row's ow columns.
    assert_eq!(xp.len(), g.batch * xp_len, "padded input length");
    assert_eq!(dy.len(), g.batch * out_len, "output gradient length");
    const { assert!(LANES <= STRIP) };
    // One running tile per (kernel row, pass over GRAD_TAPS columns), kept in memory between
    // rows: each row of dy and its kh input rows are read once, while they are in L1, for every
    // kernel row (a pass per kernel row over the whole batch would stream it kh times).
    let passes = kw.div_ceil(GRAD_TAPS);
    let mut tiles = vec![[[_mm512_setzero_ps(); GRAD_TAPS]; GRAD_OUT_BLOCK]; kh * passes];
    for b in samples {
        for oy in 0..oh {
            let dy_row = dy.as_ptr().add(b * out_len + (o0 * oh + oy) * ow);
            for ki in 0..kh {
                for pass in 0..passes {
                    let kj0 = pass * GRAD_TAPS;
                    let taps = GRAD_TAPS.min(kw - kj0);
                    let x_row = xp.as_ptr().add(b * xp_len + (c * hp + oy + ki) * wp + kj0);
                    let mut acc = tiles[ki * passes + pass];
                    for ox0 in (0..ow).step_by(LANES) {
                        let n = LANES.min(ow - ox0);
                        let mask = ((1u32 << n) - 1) as __mmask16;
                        let mut d = [_mm512_setzero_ps(); GRAD_OUT_BLOCK];
                        for (o, d) in d.iter_mut().enumerate().take(outputs) {
                            *d = _mm512_maskz_loadu_ps(mask, dy_row.add(o * oh * ow + ox0));
                        }
                        for j in 0..GRAD_TAPS {
                            if j < taps {
                                let xv = _mm512_loadu_ps(x_row.add(ox0 + j));
                                for (a, d) in acc.iter_mut().zip(&d) {
                                    a[j] = _mm512_fmadd_ps(*d, xv, a[j]);
                                }
                            }
                        }
                    }
                    tiles[ki * passes + pass] = acc;
                }
            }
        }
    }
    let mut out = vec![0.0f32; outputs * kh * kw];
    for ki in 0..kh {
        for pass in 0..passes {
            let kj0 = pass * GRAD_TAPS;
            for (o, a) in tiles[ki * passes + pass].iter().enumerate().take(outputs) {
                for (j, v) in a.iter().enumerate().take(GRAD_TAPS.min(kw - kj0)) {
                    out[(o * kh + ki) * kw + kj0 + j] = _mm512_reduce_add_ps(*v);
                }
            }
        }
    }
    out
}

/// One sample's output by the fastest kernel the CPU and `E` allow; every element of `y` is
/// written.
fn forward_sample<E: Float>(g: &Conv2dGeometry, xp: &[E], w_tap: &[E], bias: Option<&[E]>, y: &mut [MaybeUninit<E>]) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(xp), Some(w_tap)) = (as_f32(xp), as_f32(w_tap)) {
        let bias = bias.map(|b| as_f32(b).expect("the bias has the input's type"));
        // SAFETY: E is f32 (as_f32 said so): same size and layout, MaybeUninit included.
        let y = unsafe { std::slice::from_raw_parts_mut(y.as_mut_ptr().cast::<MaybeUninit<f32>>(), y.len()) };
        if has_avx512f() {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { forward_sample_f32_avx512(g, xp, w_tap, bias, y) };
        }
        if has_avx2_fma() {
            let kernel = match avx2_forward_tile(g.out_channels) {
                (6, 2) => forward_sample_f32_avx2::<6, 2>,
                (4, 3) => forward_sample_f32_avx2::<4, 3>,
                _ => forward_sample_f32_avx2::<3, 4>,
            };
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { kernel(g, xp, w_tap, bias, y) };
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fast<E: Float>(g: &Conv2dGeometry, xp: &[E], w_tap: &[E], bias: Option<&[E]>, y: &mut [MaybeUninit<E>]) {
        g.direct_forward_sample(xp, w_tap, bias, y)
    }
    fn portable<E: Float>(g: &Conv2dGeometry, xp: &[E], w_tap: &[E], bias: Option<&[E]>, y: &mut [MaybeUninit<E>]) {
        g.direct_forward_sample(xp, w_tap, bias, y)
    }
    dispatch!(fast, portable, (g, xp, w_tap, bias, y))
}

/// [`Conv2dGeometry::direct_forward_sample`] for f32 with AVX-512 intrinsics: the same tiles
/// and order of summation, with fused multiply-adds and the 8 × 32 tile in 16 `zmm` registers
/// (Rust does not fuse `a += w·x` into FMAs by itself, and the compiler's own vectorisation of
/// the generic loop spilled the tile to memory). Tested against the naive reference in f32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn forward_sample_f32_avx512(
    g: &Conv2dGeometry,
    xp: &[f32],
    w_tap: &[f32],
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
) {
    use std::arch::x86_64::*;
    const HALF: usize = STRIP / 2;
    let (oh, ow, kh, kw) = (g.out_h, g.out_w, g.kernel_h, g.kernel_w);
    let (hp, wp) = g.padded_size();
    let op = g.tap_stride();
    // Every read below stays inside these lengths: the last strip of a row starts at most at
    // column ow − 1 = iw + 2p − k and reads STRIP + k − 1 columns, within the STRIP zero columns
    // that `padded_size` adds; rows reach oy + ki ≤ hp − 1; weights reach tap·op + o0 + 7 < len.
    assert_eq!(xp.len(), g.in_channels * hp * wp, "padded input length");
    assert_eq!(w_tap.len(), g.patch_len() * op, "weight length");
    assert_eq!(y.len(), g.out_channels * oh * ow, "output length");
    for o0 in (0..g.out_channels).step_by(OUT_BLOCK) {
        let outputs = OUT_BLOCK.min(g.out_channels - o0);
        for oy in 0..oh {
            for ox0 in (0..ow).step_by(STRIP) {
                let mut acc = [[_mm512_setzero_ps(); 2]; OUT_BLOCK];
                if let Some(bias) = bias {
                    for (o, a) in acc.iter_mut().enumerate().take(outputs) {
                        *a = [_mm512_set1_ps(bias[o0 + o]); 2];
                    }
                }
                for c in 0..g.in_channels {
                    for ki in 0..kh {
                        let row = xp.as_ptr().add((c * hp + oy + ki) * wp + ox0);
                        for kj in 0..kw {
                            let x0 = _mm512_loadu_ps(row.add(kj));
                            let x1 = _mm512_loadu_ps(row.add(kj + HALF));
                            let ws = w_tap.as_ptr().add(((c * kh + ki) * kw + kj) * op + o0);
                            for (o, a) in acc.iter_mut().enumerate() {
                                let wv = _mm512_set1_ps(*ws.add(o));
                                a[0] = _mm512_fmadd_ps(wv, x0, a[0]);
                                a[1] = _mm512_fmadd_ps(wv, x1, a[1]);
                            }
                        }
                    }
                }
                let width = STRIP.min(ow - ox0);
                let lanes = |n: usize| -> __mmask16 { ((1u32 << n.min(HALF)) - 1) as __mmask16 };
                let (m0, m1) = (lanes(width), lanes(width.saturating_sub(HALF)));
                for (o, a) in acc.iter().enumerate().take(outputs) {
                    let dst = y.as_mut_ptr().cast::<f32>().add(((o0 + o) * oh + oy) * ow + ox0);
                    _mm512_mask_storeu_ps(dst, m0, a[0]);
                    _mm512_mask_storeu_ps(dst.add(HALF), m1, a[1]);
                }
            }
        }
    }
}

fn weight_grad_channel<E: Float>(g: &Conv2dGeometry, x: &[E], dy: &[E], o: usize, dw: &mut [E]) {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fast<E: Float>(g: &Conv2dGeometry, x: &[E], dy: &[E], o: usize, dw: &mut [E]) {
        g.direct_weight_grad_channel(x, dy, o, dw)
    }
    fn portable<E: Float>(g: &Conv2dGeometry, x: &[E], dy: &[E], o: usize, dw: &mut [E]) {
        g.direct_weight_grad_channel(x, dy, o, dw)
    }
    dispatch!(fast, portable, (g, x, dy, o, dw))
}

/// Output channels per AVX2 weight-gradient task: 2 × [`AVX2_GRAD_TAPS`] running sums, 2 output
/// gradient strips and one input strip fill 13 of the 16 `ymm` registers.
#[cfg(target_arch = "x86_64")]
const AVX2_GRAD_OUT_BLOCK: usize = 2;
/// Kernel columns summed per pass in the AVX2 weight-gradient task.
#[cfg(target_arch = "x86_64")]
const AVX2_GRAD_TAPS: usize = 5;

/// [`weight_grad_task_f32_avx512`] with AVX2 and FMA: 2 output channels × 5 kernel columns per
/// pass over strips of 8 columns, so each strip costs 2 + 5 loads for 10 FMAs.
///
/// # Safety
/// The CPU must have AVX2 and FMA. `xp` holds every sample's padded input
/// ([`Conv2dGeometry::padded_input`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weight_grad_task_f32_avx2(
    g: &Conv2dGeometry,
    xp: &[f32],
    dy: &[f32],
    o0: usize,
    c: usize,
    samples: std::ops::Range<usize>,
) -> Vec<f32> {
    use std::arch::x86_64::*;
    const LANES: usize = 8;
    const OUTS: usize = AVX2_GRAD_OUT_BLOCK;
    const TAPS: usize = AVX2_GRAD_TAPS;
    let (oh, ow, kh, kw) = (g.out_h, g.out_w, g.kernel_h, g.kernel_w);
    let (hp, wp) = g.padded_size();
    let outputs = OUTS.min(g.out_channels - o0);
    let (xp_len, out_len) = (g.in_channels * hp * wp, g.out_channels * oh * ow);
    // Reads stay inside: a strip starts at most at ow − 1 and, shifted by kj ≤ kw − 1, reads 8
    // columns of a padded row, within the STRIP zero columns past iw + 2p; dy reads are masked to
    // the row's ow columns.
    assert_eq!(xp.len(), g.batch * xp_len, "padded input length");
    assert_eq!(dy.len(), g.batch * out_len, "output gradient length");
    assert!(samples.end <= g.batch, "samples inside the batch");
    const { assert!(LANES <= STRIP) };
    let last = ow % LANES;
    let tail_mask = _mm256_cmpgt_epi32(
        _mm256_set1_epi32(last as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    );
    let full = ow - last;
    let passes = kw.div_ceil(TAPS);
    // One running tile per (kernel row, pass), kept in memory between rows, as in the AVX-512
    // kernel: each row of dy and its kh input rows are read while they are in L1.
    let mut tiles = vec![[[_mm256_setzero_ps(); TAPS]; OUTS]; kh * passes];
    for b in samples {
        for oy in 0..oh {
            let dy_row = dy.as_ptr().add(b * out_len + (o0 * oh + oy) * ow);
            for ki in 0..kh {
                for pass in 0..passes {
                    let kj0 = pass * TAPS;
                    let taps = TAPS.min(kw - kj0);
                    let x_row = xp.as_ptr().add(b * xp_len + (c * hp + oy + ki) * wp + kj0);
                    let mut acc = tiles[ki * passes + pass];
                    for ox0 in (0..ow).step_by(LANES) {
                        let mut d = [_mm256_setzero_ps(); OUTS];
                        for (o, d) in d.iter_mut().enumerate().take(outputs) {
                            let src = dy_row.add(o * oh * ow + ox0);
                            *d = if ox0 < full {
                                _mm256_loadu_ps(src)
                            } else {
                                _mm256_maskload_ps(src, tail_mask)
                            };
                        }
                        for j in 0..TAPS {
                            if j < taps {
                                let xv = _mm256_loadu_ps(x_row.add(ox0 + j));
                                for (a, d) in acc.iter_mut().zip(&d) {
                                    a[j] = _mm256_fmadd_ps(*d, xv, a[j]);
                                }
                            }
                        }
                    }
                    tiles[ki * passes + pass] = acc;
                }
            }
        }
    }
    let mut out = vec![0.0f32; outputs * kh * kw];
    for ki in 0..kh {
        for pass in 0..passes {
            let kj0 = pass * TAPS;
            for (o, a) in tiles[ki * passes + pass].iter().enumerate().take(outputs) {
                for (j, v) in a.iter().enumerate().take(TAPS.min(kw - kj0)) {
                    let mut lanes = [0.0f32; LANES];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), *v);
                    out[(o * kh + ki) * kw + kj0 + j] = lanes.iter().sum();
                }
            }
        }
    }
    out
}

/// [`Conv2dGeometry::direct_forward_sample`] for f32 with AVX2 and FMA: a tile of `OUTS` output
/// channels × `V` registers of 8 columns. AVX2 has 16 `ymm` registers, not AVX-512's 32, so the
/// tile holds 12 sums (6 × 16, 4 × 24 or 3 × 32 columns, picked by [`avx2_forward_tile`]) and
/// leaves the rest to the input strips and broadcast weights of one tap.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `OUTS` must divide [`TAP_STRIDE_MULTIPLE`] and `8·V` be at
/// most [`STRIP`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_sample_f32_avx2<const OUTS: usize, const V: usize>(
    g: &Conv2dGeometry,
    xp: &[f32],
    w_tap: &[f32],
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
) {
    use std::arch::x86_64::*;
    const LANES: usize = 8;
    const { assert!(TAP_STRIDE_MULTIPLE.is_multiple_of(OUTS) && LANES * V <= STRIP) };
    let cols = LANES * V;
    let (oh, ow, kh, kw) = (g.out_h, g.out_w, g.kernel_h, g.kernel_w);
    let (hp, wp) = g.padded_size();
    let op = g.tap_stride();
    // Every read below stays inside these lengths: the last strip of a row starts at most at
    // column ow − 1 = iw + 2p − k and reads cols + k − 1 ≤ STRIP + k − 1 columns, within the STRIP
    // zero columns of `padded_size`; weights reach tap·op + o0 + OUTS − 1 < len, because OUTS
    // divides op.
    assert_eq!(xp.len(), g.in_channels * hp * wp, "padded input length");
    assert_eq!(w_tap.len(), g.patch_len() * op, "weight length");
    assert_eq!(y.len(), g.out_channels * oh * ow, "output length");
    for o0 in (0..g.out_channels).step_by(OUTS) {
        let outputs = OUTS.min(g.out_channels - o0);
        for oy in 0..oh {
            for ox0 in (0..ow).step_by(cols) {
                let mut acc = [[_mm256_setzero_ps(); V]; OUTS];
                if let Some(bias) = bias {
                    for (o, a) in acc.iter_mut().enumerate().take(outputs) {
                        *a = [_mm256_set1_ps(bias[o0 + o]); V];
                    }
                }
                for c in 0..g.in_channels {
                    for ki in 0..kh {
                        let row = xp.as_ptr().add((c * hp + oy + ki) * wp + ox0);
                        let w_row = w_tap.as_ptr().add((c * kh + ki) * kw * op + o0);
                        for kj in 0..kw {
                            let mut xv = [_mm256_setzero_ps(); V];
                            for (v, x) in xv.iter_mut().enumerate() {
                                *x = _mm256_loadu_ps(row.add(kj + v * LANES));
                            }
                            let ws = w_row.add(kj * op);
                            for (o, a) in acc.iter_mut().enumerate() {
                                let wv = _mm256_broadcast_ss(&*ws.add(o));
                                for (a, x) in a.iter_mut().zip(&xv) {
                                    *a = _mm256_fmadd_ps(wv, *x, *a);
                                }
                            }
                        }
                    }
                }
                let width = cols.min(ow - ox0);
                for (o, a) in acc.iter().enumerate().take(outputs) {
                    let dst = y.as_mut_ptr().cast::<f32>().add(((o0 + o) * oh + oy) * ow + ox0);
                    if width == cols {
                        for (v, a) in a.iter().enumerate() {
                            _mm256_storeu_ps(dst.add(v * LANES), *a);
                        }
                    } else {
                        let mut tile = [0.0f32; STRIP];
                        for (v, a) in a.iter().enumerate() {
                            _mm256_storeu_ps(tile.as_mut_ptr().add(v * LANES), *a);
                        }
                        std::ptr::copy_nonoverlapping(tile.as_ptr(), dst, width);
                    }
                }
            }
        }
    }
}

/// The AVX2 forward tile for `out_channels` filters, `(outputs, registers of 8 columns)`: the
/// fewest padding outputs, then the narrowest strip (a row's last strip is partly wasted).
#[cfg(target_arch = "x86_64")]
fn avx2_forward_tile(out_channels: usize) -> (usize, usize) {
    [(6, 2), (4, 3), (3, 4)]
        .into_iter()
        .min_by_key(|&(outs, v)| (out_channels.next_multiple_of(outs) - out_channels, v))
        .expect("three tiles")
}
