//! Direct stride-1 convolution for layers with few output channels (LeNet's first two).
//!
//! With 6 or 16 filters the GEMM's M dimension is too small to use the machine, and im2col of a
//! 224×224 image writes 25× the input. Here each output row instead accumulates shifted input
//! rows scaled by one weight (an AXPY on contiguous memory), which stays in L1. The inner loops
//! are compiled twice, for the baseline CPU and for AVX2 + FMA, and picked at run time.

use super::conv2d::Conv2dGeometry;
use super::Float;
use rayon::prelude::*;

/// `dst[i] += a · src[i]`.
#[inline(always)]
fn axpy<E: Float>(dst: &mut [E], a: E, src: &[E]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += a * *s;
    }
}

/// `Σ a[i]·b[i]` with 8 independent partial sums, so that the compiler can vectorise it
/// (floating-point addition is not associative, so one running sum would stay scalar).
#[inline(always)]
fn dot<E: Float>(a: &[E], b: &[E]) -> E {
    let mut acc = [E::zero(); 8];
    let (a8, a_rest) = a.split_at(a.len() - a.len() % 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (ca, cb) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let mut sum = acc.iter().fold(E::zero(), |s, v| s + *v);
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += *x * *y;
    }
    sum
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

    /// Whether [`Self::direct_forward`] and friends handle this geometry (and are the faster
    /// choice): stride 1 and at most 16 output channels.
    pub(crate) fn prefers_direct(&self) -> bool {
        self.stride == 1 && self.out_channels <= 16 && self.kernel_h * self.kernel_w > 1
    }

    #[inline(always)]
    fn direct_forward_sample<E: Float>(&self, x: &[E], weight: &[E], y: &mut [E]) {
        let (ih, iw, oh, ow) = (self.in_h, self.in_w, self.out_h, self.out_w);
        let (kh, kw, p) = (self.kernel_h, self.kernel_w, self.padding);
        for (o, y_plane) in y.chunks_exact_mut(oh * ow).enumerate() {
            y_plane.fill(E::zero());
            for oy in 0..oh {
                let y_row = &mut y_plane[oy * ow..(oy + 1) * ow];
                for c in 0..self.in_channels {
                    for ki in 0..kh {
                        let iy = oy + ki;
                        if iy < p || iy - p >= ih {
                            continue;
                        }
                        let x_row = &x[(c * ih + iy - p) * iw..][..iw];
                        for kj in 0..kw {
                            let (lo, hi) = self.cols(kj);
                            let w = weight[((o * self.in_channels + c) * kh + ki) * kw + kj];
                            axpy(&mut y_row[lo..hi], w, &x_row[lo + kj - p..hi + kj - p]);
                        }
                    }
                }
            }
        }
    }

    #[inline(always)]
    fn direct_input_grad_sample<E: Float>(&self, weight: &[E], dy: &[E], dx: &mut [E]) {
        let (ih, iw, oh, ow) = (self.in_h, self.in_w, self.out_h, self.out_w);
        let (kh, kw, p) = (self.kernel_h, self.kernel_w, self.padding);
        dx.fill(E::zero());
        for (c, dx_plane) in dx.chunks_exact_mut(ih * iw).enumerate() {
            for o in 0..self.out_channels {
                let dy_plane = &dy[o * oh * ow..][..oh * ow];
                for ki in 0..kh {
                    let (y_lo, y_hi) = self.rows(ki);
                    for oy in y_lo..y_hi {
                        let dx_row = &mut dx_plane[(oy + ki - p) * iw..][..iw];
                        let dy_row = &dy_plane[oy * ow..][..ow];
                        for kj in 0..kw {
                            let (lo, hi) = self.cols(kj);
                            let w = weight[((o * self.in_channels + c) * kh + ki) * kw + kj];
                            axpy(&mut dx_row[lo + kj - p..hi + kj - p], w, &dy_row[lo..hi]);
                        }
                    }
                }
            }
        }
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
                            acc += dot(&dy_plane[oy * ow + lo..oy * ow + hi], &x_row[lo + kj - p..hi + kj - p]);
                        }
                        dw[(c * kh + ki) * kw + kj] += acc;
                    }
                }
            }
        }
    }

    /// Forward pass without bias, `[B, O, Ho, Wo]`.
    pub(crate) fn direct_forward<E: Float>(&self, x: &[E], weight: &[E]) -> Vec<E> {
        let mut y = vec![E::zero(); self.batch * self.out_channels * self.out_pixels()];
        let in_len = self.in_channels * self.in_h * self.in_w;
        let out_len = self.out_channels * self.out_pixels();
        y.par_chunks_mut(out_len.max(1))
            .zip(x.par_chunks(in_len.max(1)))
            .for_each(|(yb, xb)| forward_sample(self, xb, weight, yb));
        y
    }

    /// Input gradient, `[B, C, H, W]`.
    pub(crate) fn direct_input_grad<E: Float>(&self, weight: &[E], dy: &[E]) -> Vec<E> {
        let in_len = self.in_channels * self.in_h * self.in_w;
        let out_len = self.out_channels * self.out_pixels();
        let mut dx = vec![E::zero(); self.batch * in_len];
        dx.par_chunks_mut(in_len.max(1))
            .zip(dy.par_chunks(out_len.max(1)))
            .for_each(|(dxb, dyb)| input_grad_sample(self, weight, dyb, dxb));
        dx
    }

    /// Weight gradient, `[O, C, Kh, Kw]`.
    pub(crate) fn direct_weight_grad<E: Float>(&self, x: &[E], dy: &[E]) -> Vec<E> {
        let per_filter = self.patch_len();
        let mut dw = vec![E::zero(); self.out_channels * per_filter];
        dw.par_chunks_mut(per_filter.max(1))
            .enumerate()
            .for_each(|(o, dwo)| weight_grad_channel(self, x, dy, o, dwo));
        dw
    }
}

fn forward_sample<E: Float>(g: &Conv2dGeometry, x: &[E], w: &[E], y: &mut [E]) {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fast<E: Float>(g: &Conv2dGeometry, x: &[E], w: &[E], y: &mut [E]) {
        g.direct_forward_sample(x, w, y)
    }
    fn portable<E: Float>(g: &Conv2dGeometry, x: &[E], w: &[E], y: &mut [E]) {
        g.direct_forward_sample(x, w, y)
    }
    dispatch!(fast, portable, (g, x, w, y))
}

fn input_grad_sample<E: Float>(g: &Conv2dGeometry, w: &[E], dy: &[E], dx: &mut [E]) {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fast<E: Float>(g: &Conv2dGeometry, w: &[E], dy: &[E], dx: &mut [E]) {
        g.direct_input_grad_sample(w, dy, dx)
    }
    fn portable<E: Float>(g: &Conv2dGeometry, w: &[E], dy: &[E], dx: &mut [E]) {
        g.direct_input_grad_sample(w, dy, dx)
    }
    dispatch!(fast, portable, (g, w, dy, dx))
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
