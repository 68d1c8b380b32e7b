//! 2-D convolution. Four algorithms, one per kind of layer ([`ConvAlgorithm`]): im2col + GEMM for
//! any geometry, Winograd F(2×2, 3×3) and F(2×2, 5×5) for deep stride-1 layers (winograd.rs,
//! winograd_5x5.rs), register-tiled direct loops for layers with few filters (conv_direct.rs) and
//! plain GEMMs for 1×1 kernels.
//!
//! Layouts follow PyTorch and Paddle: input `[B, C, H, W]`, weight `[O, C, Kh, Kw]`,
//! bias `[O]`, output `[B, O, Ho, Wo]`, all contiguous row-major.
//!
//! im2col lays the input patches of a few samples out as a `[C·Kh·Kw, samples·Ho·Wo]` matrix
//! (`col`), so the forward pass is a GEMM, `Y = W · col`. Backward rebuilds `col` instead of
//! storing it (AlexNet's first layer would keep 45 MB of patches per batch of 10):
//! `dW = dY · colᵀ`, `dcol = Wᵀ · dY`, then `dcol` is scattered back onto the input (col2im).
//! Each thread takes a group of samples (see [`Conv2dGeometry::split`]).

use super::conv_direct::{direct_kernels_vectorised, OUT_BLOCK};
use super::gemm::{matmul, MatRef};
use super::{add_assign, sum, threads, window_output_size, Float, RowMajor};
use dfdx::prelude::*;
use rayon::prelude::*;
use std::ops::Range;

/// Output columns below which the im2col path puts several samples into one GEMM.
const CHUNK_COLUMNS: usize = 512;

/// See [`Conv2dGeometry::split`].
#[derive(Debug, Clone, Copy)]
struct BatchSplit {
    group_len: usize,
    chunk_len: usize,
    gemm_threads: usize,
}

/// How a convolution is computed. [`Conv2dGeometry::new`] picks the fastest that applies;
/// [`Conv2dGeometry::with_algorithm`] forces another, so that tests run every path on the same
/// cases and benchmarks compare them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvAlgorithm {
    /// Register-tiled direct loops (conv_direct.rs): stride 1, a square kernel larger than 1×1,
    /// padding smaller than the kernel. Picked for at most 16 filters where the CPU has AVX-512
    /// (LeNet-PALM's conv1 and conv2), else for at most 8 (conv1), and then not for the input
    /// gradient of layers with fewer than 8 input channels.
    Direct,
    /// 1×1, stride 1, no padding: each input sample is its own patch matrix, one GEMM each.
    Pointwise,
    /// Patch matrix and GEMM: any geometry.
    Im2col,
    /// Winograd F(2×2, 3×3) (winograd.rs) or F(2×2, 5×5) (winograd_5x5.rs): 3×3 or 5×5
    /// kernels at stride 1. Picked from [`WINOGRAD_MIN_CHANNELS`] (3×3) or
    /// [`WINOGRAD_5X5_MIN_CHANNELS`] (5×5) input channels on, up to [`WINOGRAD_MAX_BUFFER`].
    Winograd,
}

/// Input channels from which 3×3 stride-1 layers take Winograd: below, the transforms cost more
/// than the 2.25× cut in multiplications saves.
pub const WINOGRAD_MIN_CHANNELS: usize = 32;

/// Input channels from which 5×5 stride-1 layers take Winograd F(2×2, 5×5): AlexNet conv2 (96)
/// does; GoogLeNet's 5×5 branches (16–48 channels, 7×7 to 28×28 images) keep im2col, where the
/// transforms' share is larger and the F(2×2, 5×5) path has not been measured.
pub const WINOGRAD_5X5_MIN_CHANNELS: usize = 64;

/// The largest transform-domain buffer (elements) for which layers take Winograd. Its buffers
/// hold the whole batch's tiles: AlexNet conv4's are 3 M elements (12 MB) and conv2's 18 M
/// (72 MB, 36 positions × 256 channels × 1,960 tiles), while VGG-16's 224×224 layers would need
/// 128 M (514 MB) each, several at once in the backward pass; those keep im2col, which works
/// one sample at a time.
pub const WINOGRAD_MAX_BUFFER: usize = 20 << 20;

/// Every size a convolution needs, checked for consistency by [`Conv2dGeometry::new`], and the
/// algorithm that computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Output channels (number of filters).
    pub out_channels: usize,
    /// Kernel height.
    pub kernel_h: usize,
    /// Kernel width.
    pub kernel_w: usize,
    /// Stride, the same along both axes.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Output height, `(in_h + 2·padding − kernel_h) / stride + 1`.
    pub out_h: usize,
    /// Output width, `(in_w + 2·padding − kernel_w) / stride + 1`.
    pub out_w: usize,
    algorithm: ConvAlgorithm,
    input_grad_algorithm: ConvAlgorithm,
}

impl Conv2dGeometry {
    /// Computes the output size; `None` when the kernel does not fit the padded input or the
    /// stride is zero.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch: usize,
        in_channels: usize,
        (in_h, in_w): (usize, usize),
        out_channels: usize,
        (kernel_h, kernel_w): (usize, usize),
        stride: usize,
        padding: usize,
    ) -> Option<Self> {
        let mut g = Self {
            batch,
            in_channels,
            in_h,
            in_w,
            out_channels,
            kernel_h,
            kernel_w,
            stride,
            padding,
            out_h: window_output_size(in_h, kernel_h, stride, padding)?,
            out_w: window_output_size(in_w, kernel_w, stride, padding)?,
            algorithm: ConvAlgorithm::Im2col,
            input_grad_algorithm: ConvAlgorithm::Im2col,
        };
        g.algorithm = g.preferred_algorithm();
        g.input_grad_algorithm = g.preferred_input_grad_algorithm();
        Some(g)
    }

    /// The algorithm [`Self::new`] picks.
    fn preferred_algorithm(&self) -> ConvAlgorithm {
        if self.prefers_direct() {
            ConvAlgorithm::Direct
        } else if self.is_pointwise() {
            ConvAlgorithm::Pointwise
        } else if self.winograd_applies()
            && self.in_channels
                >= if self.kernel_h == 5 {
                    WINOGRAD_5X5_MIN_CHANNELS
                } else {
                    WINOGRAD_MIN_CHANNELS
                }
            && self.winograd_buffer_len() <= WINOGRAD_MAX_BUFFER
        {
            ConvAlgorithm::Winograd
        } else {
            ConvAlgorithm::Im2col
        }
    }

    /// The input gradient of the direct loops is a direct convolution whose filters are the
    /// layer's input channels: with fewer than one register tile of them (LeNet-PALM's conv1 has
    /// 3), most of the tile is padding. With the f32 kernels for AVX-512 or AVX2 that still pays
    /// (6.0 ms at that layer on the quiet Zen 4 machine, batch 10; 7.5 ms against im2col's 17.5
    /// on the Zen 3 machine with AVX2); with the portable loops, im2col is twice as fast (20.6 ms
    /// against 42.1 on the Zen 3 machine before it had AVX2 kernels).
    fn preferred_input_grad_algorithm(&self) -> ConvAlgorithm {
        if self.algorithm == ConvAlgorithm::Direct && self.in_channels < OUT_BLOCK && !direct_kernels_vectorised() {
            ConvAlgorithm::Im2col
        } else {
            self.algorithm
        }
    }

    /// The algorithm of the forward pass and the weight gradient.
    pub fn algorithm(&self) -> ConvAlgorithm {
        self.algorithm
    }

    /// The algorithm of the input gradient.
    pub fn input_grad_algorithm(&self) -> ConvAlgorithm {
        self.input_grad_algorithm
    }

    /// Whether `algorithm` can compute this geometry.
    pub fn supports(&self, algorithm: ConvAlgorithm) -> bool {
        match algorithm {
            ConvAlgorithm::Direct => self.direct_applies(),
            ConvAlgorithm::Pointwise => self.is_pointwise(),
            ConvAlgorithm::Im2col => true,
            ConvAlgorithm::Winograd => self.winograd_applies(),
        }
    }

    /// The same geometry computed by `algorithm` in every pass, or `None` where that cannot
    /// compute it.
    pub fn with_algorithm(self, algorithm: ConvAlgorithm) -> Option<Self> {
        self.supports(algorithm).then_some(Self {
            algorithm,
            input_grad_algorithm: algorithm,
            ..self
        })
    }

    /// Rows of the patch matrix: `C·Kh·Kw`.
    pub fn patch_len(&self) -> usize {
        self.in_channels * self.kernel_h * self.kernel_w
    }

    /// Output pixels per channel: `Ho·Wo`.
    pub fn out_pixels(&self) -> usize {
        self.out_h * self.out_w
    }

    pub(crate) fn in_sample_len(&self) -> usize {
        self.in_channels * self.in_h * self.in_w
    }

    fn out_sample_len(&self) -> usize {
        self.out_channels * self.out_pixels()
    }

    /// True when the patch matrix is the input itself (1×1 kernel, stride 1, no padding).
    fn is_pointwise(&self) -> bool {
        self.kernel_h == 1 && self.kernel_w == 1 && self.stride == 1 && self.padding == 0
    }

    /// Multiply-accumulate count of the forward pass, for benchmarks.
    pub fn forward_macs(&self) -> usize {
        self.batch * self.out_channels * self.patch_len() * self.out_pixels()
    }

    /// For output coordinate `o` along an axis and kernel offset `k`, the input coordinate is
    /// `o·stride + k − padding`. Returns the range of `o` for which it lies inside `0..n`.
    fn valid_range(&self, k: usize, n: usize, out_n: usize) -> (usize, usize) {
        let s = self.stride;
        let p = self.padding;
        // o·s + k ≥ p  ⇔  o ≥ ceil((p − k) / s)
        let lo = if k >= p { 0 } else { (p - k).div_ceil(s) };
        // o·s + k − p ≤ n − 1  ⇔  o ≤ (n − 1 + p − k) / s
        let hi = if n + p > k {
            ((n - 1 + p - k) / s + 1).min(out_n)
        } else {
            0
        };
        (lo.min(hi), hi)
    }

    /// Threads each per-sample GEMM may use: all of them when the batch cannot keep them busy.
    fn gemm_threads(&self) -> usize {
        if self.batch >= threads() {
            1
        } else {
            threads()
        }
    }

    /// Decodes patch-matrix row `r` into (channel, kernel row, kernel column).
    fn patch_row(&self, r: usize) -> (usize, usize, usize) {
        let per_channel = self.kernel_h * self.kernel_w;
        (r / per_channel, (r % per_channel) / self.kernel_w, r % self.kernel_w)
    }

    /// Fills `row` (`Ho·Wo` values) with input channel `c` of one sample, shifted by kernel
    /// offset (`ki`, `kj`): one row of the patch matrix.
    fn fill_patch_row<E: Float>(&self, plane: &[E], (ki, kj): (usize, usize), row: &mut [E]) {
        let (oh, ow, s, p) = (self.out_h, self.out_w, self.stride, self.padding);
        let (y_lo, y_hi) = self.valid_range(ki, self.in_h, oh);
        let (x_lo, x_hi) = self.valid_range(kj, self.in_w, ow);
        for oy in 0..oh {
            let dst = &mut row[oy * ow..(oy + 1) * ow];
            if oy < y_lo || oy >= y_hi {
                dst.fill(E::zero());
                continue;
            }
            let iy = oy * s + ki - p;
            let src = &plane[iy * self.in_w..(iy + 1) * self.in_w];
            dst[..x_lo].fill(E::zero());
            dst[x_hi..].fill(E::zero());
            if s == 1 {
                let ix0 = x_lo + kj - p;
                dst[x_lo..x_hi].copy_from_slice(&src[ix0..ix0 + (x_hi - x_lo)]);
            } else {
                // An iterator rather than indexing: no bounds check per element of the gather.
                let strided = src[x_lo * s + kj - p..].iter().step_by(s);
                for (d, v) in dst[x_lo..x_hi].iter_mut().zip(strided) {
                    *d = *v;
                }
            }
        }
    }

    /// How the batch is split for the im2col path: into `groups` contiguous runs of
    /// `group_len` samples (the last may be shorter), one per thread, each walked in chunks of
    /// `chunk_len` samples whose patch matrix `[C·Kh·Kw, chunk_len·Ho·Wo]` is one GEMM's right
    /// side. `gemm_threads` is what each GEMM may use: all threads when the batch is too small
    /// to give each thread a group (batch 1 in Grad-CAM), else one.
    ///
    /// A chunk is one sample when that gives the GEMM at least `CHUNK_COLUMNS` columns (AlexNet
    /// conv1–conv2, LeNet-PALM conv3): the GEMM then writes the sample's output in place and
    /// reads its output gradient in place. Smaller outputs (AlexNet conv3–conv5, 14×14) take
    /// several samples per chunk, so that the GEMM keeps a useful width, and are regrouped.
    fn split(&self) -> BatchSplit {
        let t = threads();
        let groups = self.batch.clamp(1, t);
        let group_len = self.batch.div_ceil(groups).max(1);
        let chunk_len = CHUNK_COLUMNS.div_ceil(self.out_pixels().max(1)).clamp(1, group_len);
        BatchSplit {
            group_len,
            chunk_len,
            gemm_threads: if groups < t { t } else { 1 },
        }
    }

    /// The patch matrix of samples `samples` of `x` (`[C·Kh·Kw, len·Ho·Wo]`, sample `j` of the
    /// range in columns `j·Ho·Wo ..`), written into `col` (every element is overwritten).
    fn im2col<E: Float>(&self, x: &[E], samples: Range<usize>, col: &mut [E], parallel: bool) {
        let n = self.out_pixels();
        let plane_len = self.in_h * self.in_w;
        let cols = samples.len() * n;
        let fill_row = |(r, row): (usize, &mut [E])| {
            let (c, ki, kj) = self.patch_row(r);
            for (b, dst) in samples.clone().zip(row.chunks_exact_mut(n)) {
                let plane = &x[(b * self.in_channels + c) * plane_len..][..plane_len];
                self.fill_patch_row(plane, (ki, kj), dst);
            }
        };
        let col = &mut col[..self.patch_len() * cols];
        if parallel {
            col.par_chunks_mut(cols).enumerate().for_each(fill_row);
        } else {
            col.chunks_mut(cols).enumerate().for_each(fill_row);
        }
    }

    /// Adds the patch gradients of sample `j` of a chunk of `chunk_len` samples (`dcol`,
    /// `[C·Kh·Kw, chunk_len·Ho·Wo]`) onto that sample's input gradient `dx` (col2im).
    fn col2im_add<E: Float>(&self, dcol: &[E], chunk_len: usize, j: usize, dx: &mut [E]) {
        let (oh, ow, s, p) = (self.out_h, self.out_w, self.stride, self.padding);
        let n = self.out_pixels();
        let plane_len = self.in_h * self.in_w;
        for r in 0..self.patch_len() {
            let (c, ki, kj) = self.patch_row(r);
            let row = &dcol[(r * chunk_len + j) * n..][..n];
            let plane = &mut dx[c * plane_len..(c + 1) * plane_len];
            let (y_lo, y_hi) = self.valid_range(ki, self.in_h, oh);
            let (x_lo, x_hi) = self.valid_range(kj, self.in_w, ow);
            for oy in y_lo..y_hi {
                let iy = oy * s + ki - p;
                let dst = &mut plane[iy * self.in_w..(iy + 1) * self.in_w];
                let src = &row[oy * ow + x_lo..oy * ow + x_hi];
                if s == 1 {
                    let ix0 = x_lo + kj - p;
                    add_assign(&mut dst[ix0..ix0 + src.len()], src);
                } else {
                    for (ox, g) in src.iter().enumerate() {
                        dst[(ox + x_lo) * s + kj - p] += *g;
                    }
                }
            }
        }
    }

    /// The im2col forward pass over one group of samples (`x`, `out`: the group's inputs and
    /// outputs, batch-major), chunk by chunk; `out` arrives zeroed.
    fn im2col_forward_group<E: Float>(
        &self,
        split: BatchSplit,
        x: &[E],
        w: MatRef<E>,
        bias: Option<&[E]>,
        out: &mut [E],
    ) {
        let (k, n, o) = (self.patch_len(), self.out_pixels(), self.out_channels);
        let samples = out.len() / self.out_sample_len();
        let mut col = Vec::new();
        let mut chunk_out = Vec::new();
        for b0 in (0..samples).step_by(split.chunk_len) {
            let len = split.chunk_len.min(samples - b0);
            let cols = len * n;
            col.resize(k * cols, E::zero());
            self.im2col(x, b0..b0 + len, &mut col, split.gemm_threads > 1);
            let rhs = MatRef::new(&col, k, cols);
            let out_chunk = &mut out[b0 * o * n..(b0 + len) * o * n];
            if len == 1 {
                // The GEMM's `[O, Ho·Wo]` result is the sample's output: start from the bias.
                if let Some(bias) = bias {
                    for (plane, &b) in out_chunk.chunks_exact_mut(n).zip(bias) {
                        plane.fill(b);
                    }
                }
                matmul(out_chunk, w, rhs, bias.is_some(), split.gemm_threads);
            } else {
                chunk_out.resize(o * cols, E::zero());
                matmul(&mut chunk_out, w, rhs, false, split.gemm_threads);
                // `[O, len·N]` → `[len, O, N]`, adding the bias on the way.
                for (j, yb) in out_chunk.chunks_exact_mut(o * n).enumerate() {
                    for (oc, dst) in yb.chunks_exact_mut(n).enumerate() {
                        let src = &chunk_out[(oc * len + j) * n..][..n];
                        let b = bias.map_or(E::zero(), |bias| bias[oc]);
                        for (d, s) in dst.iter_mut().zip(src) {
                            *d = *s + b;
                        }
                    }
                }
            }
        }
    }

    /// The im2col backward pass over one group of samples: adds the group's weight gradient
    /// onto `dw` when `x` is given, and writes its input gradient into `dx` (zeroed on arrival)
    /// when `weight_t` (`Wᵀ`) is given. One patch buffer per group serves both: first as the
    /// patches for `dW += dY·colᵀ`, then overwritten with `dcol = Wᵀ·dY` for col2im.
    #[allow(clippy::too_many_arguments)]
    fn im2col_backward_group<E: Float>(
        &self,
        split: BatchSplit,
        x: Option<&[E]>,
        weight_t: Option<MatRef<E>>,
        dy: &[E],
        mut dw: Option<&mut [E]>,
        mut dx: Option<&mut [E]>,
    ) {
        let (k, n, o) = (self.patch_len(), self.out_pixels(), self.out_channels);
        let samples = dy.len() / self.out_sample_len();
        let mut col = Vec::new();
        let mut chunk_dy = Vec::new();
        for b0 in (0..samples).step_by(split.chunk_len) {
            let len = split.chunk_len.min(samples - b0);
            let cols = len * n;
            let dy_chunk = &dy[b0 * o * n..(b0 + len) * o * n];
            // The GEMMs want `[O, len·N]`; one sample's `[O, N]` already is.
            let dy_t: &[E] = if len == 1 {
                dy_chunk
            } else {
                chunk_dy.resize(o * cols, E::zero());
                for (oc, row) in chunk_dy.chunks_exact_mut(cols).enumerate() {
                    for (j, dst) in row.chunks_exact_mut(n).enumerate() {
                        dst.copy_from_slice(&dy_chunk[(j * o + oc) * n..][..n]);
                    }
                }
                &chunk_dy
            };
            let dy_t = MatRef::new(dy_t, o, cols);
            col.resize(k * cols, E::zero());
            if let (Some(x), Some(dw)) = (x, dw.as_deref_mut()) {
                self.im2col(x, b0..b0 + len, &mut col, split.gemm_threads > 1);
                matmul(dw, dy_t, MatRef::new(&col, k, cols).t(), true, split.gemm_threads);
            }
            if let (Some(wt), Some(dx)) = (weight_t, dx.as_deref_mut()) {
                matmul(&mut col, wt, dy_t, false, split.gemm_threads);
                let dx_chunk = &mut dx[b0 * self.in_sample_len()..(b0 + len) * self.in_sample_len()];
                for (j, dxb) in dx_chunk.chunks_exact_mut(self.in_sample_len()).enumerate() {
                    self.col2im_add(&col, len, j, dxb);
                }
            }
        }
    }

    /// The im2col backward pass over the whole batch: the input gradient when `weight` is
    /// given, the weight gradient when `x` is, each group of samples on its own thread (the
    /// weight gradient summed over the groups' partial sums).
    fn im2col_backward<E: Float>(
        &self,
        x: Option<&[E]>,
        weight: Option<&[E]>,
        dy: &[E],
    ) -> (Option<Vec<E>>, Option<Vec<E>>) {
        let split = self.split();
        let k = self.patch_len();
        let o = self.out_channels;
        let weight_t = weight.map(|w| MatRef::new(w, o, k).t());
        let mut dx = weight.map(|_| vec![E::zero(); self.batch * self.in_sample_len()]);
        let dy_groups = dy.par_chunks(split.group_len * self.out_sample_len());
        let dw = match (x, dx.as_mut()) {
            (Some(x), dx) => {
                let x_groups = x.par_chunks(split.group_len * self.in_sample_len());
                let partial = |dy_group: &[E], x_group: &[E], dx_group: Option<&mut [E]>| {
                    let mut dw = vec![E::zero(); o * k];
                    self.im2col_backward_group(split, Some(x_group), weight_t, dy_group, Some(&mut dw), dx_group);
                    dw
                };
                let sum = |mut a: Vec<E>, b: Vec<E>| {
                    add_assign(&mut a, &b);
                    a
                };
                let dw = match dx {
                    Some(dx) => dy_groups
                        .zip(x_groups)
                        .zip(dx.par_chunks_mut(split.group_len * self.in_sample_len()))
                        .map(|((dy_g, x_g), dx_g)| partial(dy_g, x_g, Some(dx_g)))
                        .reduce_with(sum),
                    None => dy_groups
                        .zip(x_groups)
                        .map(|(dy_g, x_g)| partial(dy_g, x_g, None))
                        .reduce_with(sum),
                };
                Some(dw.unwrap_or_else(|| vec![E::zero(); o * k]))
            }
            (None, Some(dx)) => {
                dy_groups
                    .zip(dx.par_chunks_mut(split.group_len * self.in_sample_len()))
                    .for_each(|(dy_g, dx_g)| self.im2col_backward_group(split, None, weight_t, dy_g, None, Some(dx_g)));
                None
            }
            (None, None) => None,
        };
        (dx, dw)
    }

    /// Forward pass: returns `[B, O, Ho, Wo]`.
    pub fn forward<E: Float>(&self, x: &[E], weight: &[E], bias: Option<&[E]>) -> Vec<E> {
        assert_eq!(x.len(), self.batch * self.in_sample_len(), "input length");
        assert_eq!(weight.len(), self.out_channels * self.patch_len(), "weight length");
        let mut out = match self.algorithm {
            // These three add the bias as they write the output.
            ConvAlgorithm::Im2col => return self.im2col_forward(x, weight, bias),
            ConvAlgorithm::Winograd => return self.winograd_forward(x, weight, bias),
            ConvAlgorithm::Direct => return self.direct_forward(x, weight, bias),
            ConvAlgorithm::Pointwise => self.pointwise_forward(x, weight),
        };
        if let Some(bias) = bias {
            let (n, o) = (self.out_pixels(), self.out_channels);
            out.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, plane)| {
                let b = bias[i % o];
                plane.iter_mut().for_each(|v| *v += b);
            });
        }
        out
    }

    fn im2col_forward<E: Float>(&self, x: &[E], weight: &[E], bias: Option<&[E]>) -> Vec<E> {
        let w = MatRef::new(weight, self.out_channels, self.patch_len());
        let split = self.split();
        let mut out = vec![E::zero(); self.batch * self.out_sample_len()];
        out.par_chunks_mut(split.group_len * self.out_sample_len())
            .zip(x.par_chunks(split.group_len * self.in_sample_len()))
            .for_each(|(out_group, x_group)| self.im2col_forward_group(split, x_group, w, bias, out_group));
        out
    }

    /// The input sample already is the patch matrix: no copy at all.
    fn pointwise_forward<E: Float>(&self, x: &[E], weight: &[E]) -> Vec<E> {
        let (k, n) = (self.patch_len(), self.out_pixels());
        let w = MatRef::new(weight, self.out_channels, k);
        let gemm_threads = self.gemm_threads();
        let mut out = vec![E::zero(); self.batch * self.out_sample_len()];
        out.par_chunks_mut(self.out_sample_len().max(1))
            .zip(x.par_chunks(self.in_sample_len().max(1)))
            .for_each(|(y, xb)| matmul(y, w, MatRef::new(xb, k, n), false, gemm_threads));
        out
    }

    /// The input gradient when `weight` is given and the weight gradient when `x` is.
    fn gradients<E: Float>(&self, x: Option<&[E]>, weight: Option<&[E]>, dy: &[E]) -> (Option<Vec<E>>, Option<Vec<E>>) {
        assert_eq!(dy.len(), self.batch * self.out_sample_len(), "output gradient length");
        if self.input_grad_algorithm != self.algorithm {
            // Each gradient by its own algorithm.
            let by = |a| self.with_algorithm(a).expect("a supported algorithm");
            let dx = weight.and_then(|w| by(self.input_grad_algorithm).gradients(None, Some(w), dy).0);
            let dw = x.and_then(|x| by(self.algorithm).gradients(Some(x), None, dy).1);
            return (dx, dw);
        }
        match self.algorithm {
            ConvAlgorithm::Direct => (
                weight.map(|w| self.direct_input_grad(w, dy)),
                x.map(|x| self.direct_weight_grad(x, dy)),
            ),
            ConvAlgorithm::Pointwise => (
                weight.map(|w| self.pointwise_input_grad(w, dy)),
                x.map(|x| self.pointwise_weight_grad(x, dy)),
            ),
            ConvAlgorithm::Im2col => self.im2col_backward(x, weight, dy),
            ConvAlgorithm::Winograd => self.winograd_backward(x, weight, dy),
        }
    }

    /// Gradient with respect to the input, `[B, C, H, W]`.
    pub fn backward_input<E: Float>(&self, weight: &[E], dy: &[E]) -> Vec<E> {
        self.gradients(None, Some(weight), dy).0.expect("input gradient")
    }

    fn pointwise_input_grad<E: Float>(&self, weight: &[E], dy: &[E]) -> Vec<E> {
        let (k, n) = (self.patch_len(), self.out_pixels());
        let wt = MatRef::new(weight, self.out_channels, k).t();
        let gemm_threads = self.gemm_threads();
        let mut dx = vec![E::zero(); self.batch * self.in_sample_len()];
        dx.par_chunks_mut(self.in_sample_len().max(1))
            .zip(dy.par_chunks(self.out_sample_len().max(1)))
            .for_each(|(dxb, dyb)| matmul(dxb, wt, MatRef::new(dyb, self.out_channels, n), false, gemm_threads));
        dx
    }

    /// Gradients with respect to the weight `[O, C, Kh, Kw]` and the bias `[O]`.
    pub fn backward_params<E: Float>(&self, x: &[E], dy: &[E]) -> (Vec<E>, Vec<E>) {
        let dw = self.gradients(Some(x), None, dy).1.expect("weight gradient");
        (dw, self.bias_grad(dy))
    }

    fn pointwise_weight_grad<E: Float>(&self, x: &[E], dy: &[E]) -> Vec<E> {
        let (k, n, o) = (self.patch_len(), self.out_pixels(), self.out_channels);
        let mut dw = vec![E::zero(); o * k];
        for (xb, dyb) in x
            .chunks_exact(self.in_sample_len().max(1))
            .zip(dy.chunks_exact(self.out_sample_len().max(1)))
        {
            matmul(
                &mut dw,
                MatRef::new(dyb, o, n),
                MatRef::new(xb, k, n).t(),
                true,
                threads(),
            );
        }
        dw
    }

    /// Bias gradient from the batch-major output gradient `[B, O, N]`.
    fn bias_grad<E: Float>(&self, dy: &[E]) -> Vec<E> {
        let (n, o) = (self.out_pixels(), self.out_channels);
        (0..o)
            .into_par_iter()
            .map(|oc| (0..self.batch).fold(E::zero(), |acc, b| acc + sum::<8, E>(&dy[(b * o + oc) * n..][..n])))
            .collect()
    }

    /// All three gradients: input `[B, C, H, W]`, weight `[O, C, Kh, Kw]`, bias `[O]`.
    pub fn backward<E: Float>(&self, x: &[E], weight: &[E], dy: &[E]) -> (Vec<E>, Vec<E>, Vec<E>) {
        let (dx, dw) = self.gradients(Some(x), Some(weight), dy);
        (
            dx.expect("input gradient"),
            dw.expect("weight gradient"),
            self.bias_grad(dy),
        )
    }
}

/// 2-D convolution of `x` (`[B, C, H, W]`) with `weight` (`[O, C, Kh, Kw]`) and an optional
/// `bias` (`[O]`), recorded on `x`'s tape so that gradients flow to the input, the weight and the
/// bias.
///
/// `out_hw` is the output height and width as the caller's types spell them (`Const` in layers,
/// `usize` elsewhere); it must equal `(n + 2·padding − k) / stride + 1`, checked at run time here
/// (layers check it when the program is built).
///
/// # Panics
/// When `out_hw` does not match the geometry, or the kernel does not fit the padded input.
#[allow(clippy::type_complexity)]
pub fn conv2d<B, C, H, W, O, Ci, Kh, Kw, Ho, Wo, E, T>(
    x: Tensor<(B, C, H, W), E, Cpu, T>,
    weight: &Tensor<(O, Ci, Kh, Kw), E, Cpu>,
    bias: Option<&Tensor<(O,), E, Cpu>>,
    stride: usize,
    padding: usize,
    out_hw: (Ho, Wo),
) -> Result<Tensor<(B, O, Ho, Wo), E, Cpu, T>, CpuError>
where
    B: Dim,
    C: Dim,
    H: Dim,
    W: Dim,
    O: Dim,
    Ci: Dim,
    Kh: Dim,
    Kw: Dim,
    Ho: Dim,
    Wo: Dim,
    E: Float,
    T: Tape<E, Cpu>,
{
    let (b_dim, c, h, w) = *x.shape();
    let (o, wc, kh, kw) = *weight.shape();
    assert_eq!(
        c.size(),
        wc.size(),
        "conv2d: input has {} channels, weight expects {}",
        c.size(),
        wc.size()
    );
    let g = Conv2dGeometry::new(
        b_dim.size(),
        c.size(),
        (h.size(), w.size()),
        o.size(),
        (kh.size(), kw.size()),
        stride,
        padding,
    )
    .unwrap_or_else(|| {
        panic!(
            "conv2d: kernel {}x{} (stride {stride}, padding {padding}) does not fit a {}x{} input",
            kh.size(),
            kw.size(),
            h.size(),
            w.size()
        )
    });
    assert_eq!(
        (g.out_h, g.out_w),
        (out_hw.0.size(), out_hw.1.size()),
        "conv2d: declared output size differs from the computed one"
    );
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let x_ghost = x.ghost();
    let (x, w) = (RowMajor::new(&x), RowMajor::new(weight));
    let b = bias.map(RowMajor::new);
    let out = dev.try_tensor_from_vec(
        g.forward(x.as_slice(), w.as_slice(), b.as_ref().map(RowMajor::as_slice)),
        (b_dim, o, out_hw.0, out_hw.1),
    )?;
    if T::OWNS_TAPE {
        let (w_ghost, out_ghost) = (weight.ghost(), out.ghost());
        let b_ghost = bias.map(|b| b.ghost());
        tape.add_backward_op(move |grads| {
            // Moved out rather than copied; put back below for anyone who reads it later.
            let dy = std::mem::take(&mut **grads.get_or_alloc_mut(&out_ghost)?);
            let (dx, dw, db) = g.backward(x.as_slice(), w.as_slice(), &dy);
            **grads.get_or_alloc_mut(&out_ghost)? = dy;
            add_assign(grads.get_or_alloc_mut(&x_ghost)?, &dx);
            add_assign(grads.get_or_alloc_mut(&w_ghost)?, &dw);
            if let Some(b_ghost) = b_ghost {
                add_assign(grads.get_or_alloc_mut(&b_ghost)?, &db);
            }
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
