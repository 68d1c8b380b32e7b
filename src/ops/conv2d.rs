//! 2-D convolution: im2col + GEMM, with a direct path for 1×1 stride-1 unpadded kernels.
//!
//! Layouts follow PyTorch and Paddle: input `[B, C, H, W]`, weight `[O, C, Kh, Kw]`,
//! bias `[O]`, output `[B, O, Ho, Wo]`, all contiguous row-major.
//!
//! For each sample the input patches are laid out as a `[C·Kh·Kw, Ho·Wo]` matrix (`col`), so
//! `out = W · col` (+ bias). Backward recomputes `col` instead of storing it (AlexNet's first layer
//! would keep 45 MB of patches per batch of 10): `dW += dY · colᵀ`, `dcol = Wᵀ · dY`, then `dcol`
//! is scattered back onto the input (col2im). Samples are spread over rayon's threads; when the
//! batch is smaller than the thread count the GEMM splits its own work instead.

use super::gemm::{matmul, MatRef};
use super::{add_assign, threads, window_output_size, Float};
use dfdx::prelude::*;
use rayon::prelude::*;

/// Every size a convolution needs, checked for consistency by [`Conv2dGeometry::new`].
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
        Some(Self {
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

    fn in_sample_len(&self) -> usize {
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
        let hi = if n + p > k { ((n - 1 + p - k) / s + 1).min(out_n) } else { 0 };
        (lo.min(hi), hi)
    }

    /// Fills `col` (`[C·Kh·Kw, Ho·Wo]`) with the patches of one input sample.
    fn im2col<E: Float>(&self, x: &[E], col: &mut [E]) {
        let (oh, ow, s, p) = (self.out_h, self.out_w, self.stride, self.padding);
        let mut rows = col.chunks_exact_mut(oh * ow);
        for c in 0..self.in_channels {
            let plane = &x[c * self.in_h * self.in_w..(c + 1) * self.in_h * self.in_w];
            for ki in 0..self.kernel_h {
                let (y_lo, y_hi) = self.valid_range(ki, self.in_h, oh);
                for kj in 0..self.kernel_w {
                    let row = rows.next().expect("col sized by patch_len");
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
                            for (ox, d) in dst[x_lo..x_hi].iter_mut().enumerate() {
                                *d = src[(ox + x_lo) * s + kj - p];
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds the patch gradients `col` back onto the gradient of one input sample (col2im).
    fn col2im_add<E: Float>(&self, col: &[E], dx: &mut [E]) {
        let (oh, ow, s, p) = (self.out_h, self.out_w, self.stride, self.padding);
        let mut rows = col.chunks_exact(oh * ow);
        for c in 0..self.in_channels {
            let plane = &mut dx[c * self.in_h * self.in_w..(c + 1) * self.in_h * self.in_w];
            for ki in 0..self.kernel_h {
                let (y_lo, y_hi) = self.valid_range(ki, self.in_h, oh);
                for kj in 0..self.kernel_w {
                    let row = rows.next().expect("col sized by patch_len");
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
        }
    }

    /// Threads each per-sample GEMM may use: all of them when the batch cannot keep them busy.
    fn gemm_threads(&self) -> usize {
        if self.batch >= threads() {
            1
        } else {
            threads()
        }
    }

    /// Forward pass: returns `[B, O, Ho, Wo]`.
    pub fn forward<E: Float>(&self, x: &[E], weight: &[E], bias: Option<&[E]>) -> Vec<E> {
        assert_eq!(x.len(), self.batch * self.in_sample_len(), "input length");
        assert_eq!(weight.len(), self.out_channels * self.patch_len(), "weight length");
        let (k, n) = (self.patch_len(), self.out_pixels());
        let w = MatRef::new(weight, self.out_channels, k);
        let gemm_threads = self.gemm_threads();
        let mut out = vec![E::zero(); self.batch * self.out_sample_len()];
        let col_len = if self.is_pointwise() { 0 } else { k * n };
        out.par_chunks_mut(self.out_sample_len().max(1))
            .zip(x.par_chunks(self.in_sample_len().max(1)))
            .for_each_init(
                || vec![E::zero(); col_len],
                |col, (y, xb)| {
                    let patches = if self.is_pointwise() {
                        xb
                    } else {
                        self.im2col(xb, col);
                        col.as_slice()
                    };
                    matmul(y, w, MatRef::new(patches, k, n), false, gemm_threads);
                    if let Some(bias) = bias {
                        for (plane, b) in y.chunks_exact_mut(n).zip(bias) {
                            plane.iter_mut().for_each(|v| *v += *b);
                        }
                    }
                },
            );
        out
    }

    /// Gradient with respect to the input, `[B, C, H, W]`.
    pub fn backward_input<E: Float>(&self, weight: &[E], dy: &[E]) -> Vec<E> {
        let (k, n) = (self.patch_len(), self.out_pixels());
        let wt = MatRef::new(weight, self.out_channels, k).t();
        let gemm_threads = self.gemm_threads();
        let mut dx = vec![E::zero(); self.batch * self.in_sample_len()];
        let col_len = if self.is_pointwise() { 0 } else { k * n };
        dx.par_chunks_mut(self.in_sample_len().max(1))
            .zip(dy.par_chunks(self.out_sample_len().max(1)))
            .for_each_init(
                || vec![E::zero(); col_len],
                |dcol, (dxb, dyb)| {
                    let dyb = MatRef::new(dyb, self.out_channels, n);
                    if self.is_pointwise() {
                        matmul(dxb, wt, dyb, false, gemm_threads);
                    } else {
                        matmul(dcol, wt, dyb, false, gemm_threads);
                        self.col2im_add(dcol, dxb);
                    }
                },
            );
        dx
    }

    /// Gradients with respect to the weight `[O, C, Kh, Kw]` and the bias `[O]`.
    pub fn backward_params<E: Float>(&self, x: &[E], dy: &[E]) -> (Vec<E>, Vec<E>) {
        let (k, n, o) = (self.patch_len(), self.out_pixels(), self.out_channels);
        let gemm_threads = self.gemm_threads();
        let chunk = self.batch.div_ceil(threads()).max(1);
        let col_len = if self.is_pointwise() { 0 } else { k * n };
        let dw = x
            .par_chunks(chunk * self.in_sample_len().max(1))
            .zip(dy.par_chunks(chunk * self.out_sample_len().max(1)))
            .map(|(xs, dys)| {
                let mut dw = vec![E::zero(); o * k];
                let mut col = vec![E::zero(); col_len];
                for (xb, dyb) in xs
                    .chunks_exact(self.in_sample_len().max(1))
                    .zip(dys.chunks_exact(self.out_sample_len().max(1)))
                {
                    let patches = if self.is_pointwise() {
                        xb
                    } else {
                        self.im2col(xb, &mut col);
                        col.as_slice()
                    };
                    let dyb = MatRef::new(dyb, o, n);
                    matmul(&mut dw, dyb, MatRef::new(patches, k, n).t(), true, gemm_threads);
                }
                dw
            })
            .reduce(
                || vec![E::zero(); o * k],
                |mut a, b| {
                    add_assign(&mut a, &b);
                    a
                },
            );
        let mut db = vec![E::zero(); o];
        for dyb in dy.chunks_exact(self.out_sample_len().max(1)) {
            for (g, plane) in db.iter_mut().zip(dyb.chunks_exact(n.max(1))) {
                *g += plane.iter().fold(E::zero(), |acc, v| acc + *v);
            }
        }
        (dw, db)
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
    let (b, c, h, w) = *x.shape();
    let (o, wc, kh, kw) = *weight.shape();
    assert_eq!(c.size(), wc.size(), "conv2d: input has {} channels, weight expects {}", c.size(), wc.size());
    let g = Conv2dGeometry::new(b.size(), c.size(), (h.size(), w.size()), o.size(), (kh.size(), kw.size()), stride, padding)
        .unwrap_or_else(|| panic!("conv2d: kernel {}x{} (stride {stride}, padding {padding}) does not fit a {}x{} input", kh.size(), kw.size(), h.size(), w.size()));
    assert_eq!(
        (g.out_h, g.out_w),
        (out_hw.0.size(), out_hw.1.size()),
        "conv2d: declared output size differs from the computed one"
    );
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let x_data = x.as_vec();
    let w_data = weight.as_vec();
    let b_data = bias.map(|b| b.as_vec());
    let out = dev.try_tensor_from_vec(g.forward(&x_data, &w_data, b_data.as_deref()), (b, o, out_hw.0, out_hw.1))?;
    if T::OWNS_TAPE {
        let x_ghost = x.ghost();
        let w_ghost = weight.ghost();
        let b_ghost = bias.map(|b| b.ghost());
        let out_ghost = out.ghost();
        drop(x);
        tape.add_backward_op(move |grads| {
            let dy = grads.get_or_alloc_mut(&out_ghost)?.to_vec();
            let dx = g.backward_input(&w_data, &dy);
            add_assign(grads.get_or_alloc_mut(&x_ghost)?, &dx);
            drop(dx);
            let (dw, db) = g.backward_params(&x_data, &dy);
            add_assign(grads.get_or_alloc_mut(&w_ghost)?, &dw);
            if let Some(b_ghost) = b_ghost {
                add_assign(grads.get_or_alloc_mut(&b_ghost)?, &db);
            }
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
