//! Winograd F(2×2, 3×3) for 3×3 stride-1 convolutions (AlexNet conv3–conv5; most of VGG-16 and
//! ResNet-50), and what it shares with F(2×2, 5×5) (winograd_5x5.rs).
//!
//! Each 2×2 block of output pixels ("tile") comes from a 4×4 window of input. With
//! `V = Bᵀ·d·B` (input window), `U = G·g·Gᵀ` (3×3 filter) and `M = Σ_c U ⊙ V`, the output tile is
//! `Aᵀ·M·A`: 16 multiplications per tile and channel pair instead of 36, a 2.25× cut in the
//! arithmetic. Summing over channels is one GEMM per position ξ of the 4×4 transform domain:
//! `M_ξ [O, T] = U_ξ [O, C] · V_ξ [C, T]` over the `T` tiles of the whole batch.
//!
//! The backward pass is the same algorithm run backwards, each linear step transposed:
//! `dM = A·dY·Aᵀ`; input gradient `dV_ξ = U_ξᵀ · dM_ξ`, then `B·dV·Bᵀ` added onto the
//! overlapping windows; weight gradient `dU_ξ = dM_ξ · V_ξᵀ`, then `Gᵀ·dU·G`. In exact arithmetic
//! these are the convolution's gradients exactly.
//!
//! Accuracy: the transforms add and subtract up to four values (`Bᵀ`, `Aᵀ`) and halve (`G`), so
//! each result carries a few more roundings than a direct sum. At AlexNet conv4's depth in f32
//! the largest error is 0.65 / 1.15 / 1.33 ε·Σ|terms| (forward / input / weight gradient)
//! against im2col's 0.48 / 0.61 / 1.21; `winograd_f32_accuracy_bound` in tests/ops_reference.rs
//! holds it within 2 ε·Σ|terms| and 3× im2col's.
//!
//! Buffers, with `T` = batch × tiles per sample and ξ = 4·row + column of the transform:
//! `U` is `[O][16][C]`, `V` and `dM` are `[C][16][T]` and `[O][16][T]` (each channel's transform
//! is one contiguous block, so the transforms run in parallel over channels), while the GEMM
//! outputs `M`, `dV` and `dU` are `[16][O][T]`, `[16][C][T]` and `[16][O][C]`, so that each
//! of the 16 GEMMs writes one contiguous matrix; the 16 GEMMs run in parallel.

use super::conv2d::Conv2dGeometry;
use super::gemm::{matmul, MatRef};
use super::Float;
use rayon::prelude::*;

/// Positions of the 4×4 transform domain.
const XI: usize = 16;

impl Conv2dGeometry {
    /// Whether Winograd computes this geometry: a 3×3 kernel (F(2×2, 3×3), here) or a 5×5 one
    /// (F(2×2, 5×5), winograd_5x5.rs) at stride 1.
    pub(crate) fn winograd_applies(&self) -> bool {
        self.kernel_h == self.kernel_w && matches!(self.kernel_h, 3 | 5) && self.stride == 1
    }

    /// Positions of the transform domain: 16 for 3×3 kernels, 36 for 5×5.
    fn winograd_points(&self) -> usize {
        (self.kernel_h + 1) * (self.kernel_w + 1)
    }

    /// Elements of the largest transform-domain buffer (`V`, `M`, `dM` or `dV`):
    /// positions × max(C, O) × tiles of the whole batch.
    pub(crate) fn winograd_buffer_len(&self) -> usize {
        self.winograd_points() * self.in_channels.max(self.out_channels) * self.batch * self.tiles_per_sample()
    }

    /// Tiles per sample: (rows, columns) of 2×2 output blocks, the last ones cropped.
    pub(super) fn tile_grid(&self) -> (usize, usize) {
        (self.out_h.div_ceil(2), self.out_w.div_ceil(2))
    }

    pub(super) fn tiles_per_sample(&self) -> usize {
        let (th, tw) = self.tile_grid();
        th * tw
    }

    /// The input plane zero-padded to cover every tile's window (4×4 for a 3×3 kernel, 6×6 for
    /// 5×5): `(2·th + k − 1) × (2·tw + k − 1)`.
    pub(super) fn winograd_padded_size(&self) -> (usize, usize) {
        let (th, tw) = self.tile_grid();
        (2 * th + self.kernel_h - 1, 2 * tw + self.kernel_w - 1)
    }

    /// `U = G·g·Gᵀ` for every filter, as `[O][16][C]`.
    fn winograd_filters<E: Float>(&self, weight: &[E]) -> Vec<E> {
        let c = self.in_channels;
        let mut u = vec![E::zero(); self.out_channels * XI * c];
        u.par_chunks_mut(XI * c).enumerate().for_each(|(o, u_o)| {
            for ci in 0..c {
                let g = &weight[(o * c + ci) * 9..][..9];
                let g = [[g[0], g[1], g[2]], [g[3], g[4], g[5]], [g[6], g[7], g[8]]];
                let t = separable(g, filter_1d);
                for (xi, v) in t.iter().flatten().enumerate() {
                    u_o[xi * c + ci] = *v;
                }
            }
        });
        u
    }

    /// `V = Bᵀ·d·B` for every tile of every channel, as `[C][16][T]`.
    fn winograd_inputs<E: Float>(&self, x: &[E]) -> Vec<E> {
        let (c, b) = (self.in_channels, self.batch);
        let tps = self.tiles_per_sample();
        let t_all = b * tps;
        let (th, tw) = self.tile_grid();
        let (hp, wp) = self.winograd_padded_size();
        let plane_len = self.in_h * self.in_w;
        let mut v = vec![E::zero(); c * XI * t_all];
        v.par_chunks_mut(XI * t_all).enumerate().for_each(|(ci, v_c)| {
            let mut padded = vec![E::zero(); hp * wp];
            let mut cols = vec![E::zero(); 4 * wp];
            for bi in 0..b {
                self.pad_plane(&x[(bi * c + ci) * plane_len..][..plane_len], &mut padded, wp);
                for ty in 0..th {
                    // Bᵀ down the columns of the window rows 2ty..2ty+4, for every column at once.
                    let r = |i: usize| &padded[(2 * ty + i) * wp..][..wp];
                    let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
                    let (c0, rest) = cols.split_at_mut(wp);
                    let (c1, rest) = rest.split_at_mut(wp);
                    let (c2, c3) = rest.split_at_mut(wp);
                    for x in 0..wp {
                        c0[x] = r0[x] - r2[x];
                        c1[x] = r1[x] + r2[x];
                        c2[x] = r2[x] - r1[x];
                        c3[x] = r1[x] - r3[x];
                    }
                    // Then Bᵀ along each tile's four columns.
                    let t0 = bi * tps + ty * tw;
                    for (i, ci_row) in cols.chunks_exact(wp).enumerate() {
                        for tx in 0..tw {
                            let d = &ci_row[2 * tx..2 * tx + 4];
                            let out = [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]];
                            for (j, val) in out.into_iter().enumerate() {
                                v_c[(4 * i + j) * t_all + t0 + tx] = val;
                            }
                        }
                    }
                }
            }
        });
        v
    }

    /// Copies `plane` (`H × W`) into `padded` (row stride `wp`) at offset (padding, padding);
    /// everything else is zero.
    /// The padded plane (`(2·th + k − 1) × (2·tw + k − 1)`) always covers `(H + 2p) × (W + 2p)`.
    pub(super) fn pad_plane<E: Float>(&self, plane: &[E], padded: &mut [E], wp: usize) {
        padded.fill(E::zero());
        let (p, w) = (self.padding, self.in_w);
        for (row, dst) in plane.chunks_exact(w).zip(padded[p * wp..].chunks_exact_mut(wp)) {
            dst[p..p + w].copy_from_slice(row);
        }
    }

    /// One GEMM `dst_ξ = lhs_ξ · rhs_ξ` per transform position, in parallel, returning `dst` as
    /// `[positions][rows][cols]`.
    fn winograd_gemms<'a, E: Float>(
        &self,
        (rows, cols): (usize, usize),
        lhs: impl Fn(usize) -> MatRef<'a, E> + Sync,
        rhs: impl Fn(usize) -> MatRef<'a, E> + Sync,
    ) -> Vec<E> {
        let mut dst = vec![E::zero(); self.winograd_points() * rows * cols];
        dst.par_chunks_mut((rows * cols).max(1))
            .enumerate()
            .for_each(|(xi, d)| matmul(d, lhs(xi), rhs(xi), false, 1));
        dst
    }

    /// `M_ξ = U_ξ · V_ξ` from `U` (`[O][ξ][C]`) and `V` (`[C][ξ][T]`), as `[ξ][O][T]`.
    pub(super) fn winograd_products<E: Float>(&self, u: &[E], v: &[E]) -> Vec<E> {
        let (c, o, xis) = (self.in_channels, self.out_channels, self.winograd_points());
        let t_all = self.batch * self.tiles_per_sample();
        self.winograd_gemms(
            (o, t_all),
            |xi| at_xi(u, xi, o, xis, c),
            |xi| at_xi(v, xi, c, xis, t_all),
        )
    }

    /// `dV_ξ = U_ξᵀ · dM_ξ` from `U` and `dM` (`[O][ξ][T]`), as `[ξ][C][T]`.
    pub(super) fn winograd_input_products<E: Float>(&self, u: &[E], dm: &[E]) -> Vec<E> {
        let (c, o, xis) = (self.in_channels, self.out_channels, self.winograd_points());
        let t_all = self.batch * self.tiles_per_sample();
        self.winograd_gemms(
            (c, t_all),
            |xi| at_xi(u, xi, o, xis, c).t(),
            |xi| at_xi(dm, xi, o, xis, t_all),
        )
    }

    /// `dU_ξ = dM_ξ · V_ξᵀ` from `dM` and `V`, as `[ξ][O][C]`.
    pub(super) fn winograd_weight_products<E: Float>(&self, dm: &[E], v: &[E]) -> Vec<E> {
        let (c, o, xis) = (self.in_channels, self.out_channels, self.winograd_points());
        let t_all = self.batch * self.tiles_per_sample();
        self.winograd_gemms(
            (o, c),
            |xi| at_xi(dm, xi, o, xis, t_all),
            |xi| at_xi(v, xi, c, xis, t_all).t(),
        )
    }

    /// Copies the interior of the padded plane (`wp` columns) to the input-gradient plane.
    pub(super) fn unpad_plane<E: Float>(&self, padded: &[E], wp: usize, dx_plane: &mut [E]) {
        let (w, p) = (self.in_w, self.padding);
        for (row, src) in dx_plane.chunks_exact_mut(w).zip(padded[p * wp..].chunks_exact(wp)) {
            row.copy_from_slice(&src[p..p + w]);
        }
    }

    /// Forward pass by Winograd F(2×2, 3×3): `[B, O, Ho, Wo]`, bias included.
    pub(crate) fn winograd_forward<E: Float>(&self, x: &[E], weight: &[E], bias: Option<&[E]>) -> Vec<E> {
        if self.kernel_h == 5 {
            return self.winograd5_forward(x, weight, bias);
        }
        let o = self.out_channels;
        let tps = self.tiles_per_sample();
        let t_all = self.batch * tps;
        let u = self.winograd_filters(weight);
        let v = self.winograd_inputs(x);
        let m = self.winograd_products(&u, &v);
        drop(v);
        // Y = Aᵀ·M·A per tile, cropped, plus the bias.
        let (oh, ow) = (self.out_h, self.out_w);
        let (th, tw) = self.tile_grid();
        let mut out = vec![E::zero(); self.batch * o * oh * ow];
        out.par_chunks_mut((oh * ow).max(1)).enumerate().for_each(|(plane, y)| {
            let (bi, oc) = (plane / o, plane % o);
            let b = bias.map_or(E::zero(), |bias| bias[oc]);
            // Aᵀ along each tile's rows: s[i][q][tx], i = transform row, q = output column.
            let mut s = vec![E::zero(); 8 * tw];
            for ty in 0..th {
                let t0 = bi * tps + ty * tw;
                for i in 0..4 {
                    let row = |j: usize| &m[((4 * i + j) * o + oc) * t_all + t0..][..tw];
                    let (m0, m1, m2, m3) = (row(0), row(1), row(2), row(3));
                    let (s0, s1) = s[2 * i * tw..(2 * i + 2) * tw].split_at_mut(tw);
                    for tx in 0..tw {
                        s0[tx] = m0[tx] + m1[tx] + m2[tx];
                        s1[tx] = m1[tx] - m2[tx] - m3[tx];
                    }
                }
                // Then Aᵀ down the columns: output rows 2ty and 2ty + 1.
                let sr = |i: usize, q: usize| &s[(2 * i + q) * tw..][..tw];
                for r in 0..2 {
                    let oy = 2 * ty + r;
                    if oy >= oh {
                        break;
                    }
                    let dst = &mut y[oy * ow..(oy + 1) * ow];
                    for q in 0..2 {
                        let (a0, a1, a2, a3) = (sr(0, q), sr(1, q), sr(2, q), sr(3, q));
                        for tx in 0..tw {
                            let ox = 2 * tx + q;
                            if ox < ow {
                                dst[ox] = b + if r == 0 {
                                    a0[tx] + a1[tx] + a2[tx]
                                } else {
                                    a1[tx] - a2[tx] - a3[tx]
                                };
                            }
                        }
                    }
                }
            }
        });
        out
    }

    /// `dM = A·dY·Aᵀ` for every tile of every output channel, as `[O][16][T]` (output pixels
    /// beyond the image, in cropped tiles, count as zero).
    fn winograd_output_grads<E: Float>(&self, dy: &[E]) -> Vec<E> {
        let o = self.out_channels;
        let (oh, ow) = (self.out_h, self.out_w);
        let (th, tw) = self.tile_grid();
        let tps = th * tw;
        let t_all = self.batch * tps;
        let mut dm = vec![E::zero(); o * XI * t_all];
        dm.par_chunks_mut(XI * t_all).enumerate().for_each(|(oc, dm_o)| {
            // One tile row of dY, zero-padded to 2·tw columns: rows d0, d1.
            let mut d = vec![E::zero(); 4 * tw];
            for bi in 0..self.batch {
                let plane = &dy[(bi * o + oc) * oh * ow..][..oh * ow];
                for ty in 0..th {
                    d.fill(E::zero());
                    for r in 0..2 {
                        let oy = 2 * ty + r;
                        if oy < oh {
                            d[r * 2 * tw..][..ow].copy_from_slice(&plane[oy * ow..][..ow]);
                        }
                    }
                    let (d0, d1) = d.split_at(2 * tw);
                    let t0 = bi * tps + ty * tw;
                    for tx in 0..tw {
                        // A down the columns: e[i][q] for the tile's two columns q.
                        let e = |q: usize| {
                            let (a, b) = (d0[2 * tx + q], d1[2 * tx + q]);
                            [a, a + b, a - b, -b]
                        };
                        let (e0, e1) = (e(0), e(1));
                        // Then A along the rows.
                        for i in 0..4 {
                            let (a, b) = (e0[i], e1[i]);
                            for (j, val) in [a, a + b, a - b, -b].into_iter().enumerate() {
                                dm_o[(4 * i + j) * t_all + t0 + tx] = val;
                            }
                        }
                    }
                }
            }
        });
        dm
    }

    /// Input gradient from `dM`: `dV_ξ = U_ξᵀ · dM_ξ`, then `B·dV·Bᵀ` added over every window.
    fn winograd_input_grad<E: Float>(&self, weight: &[E], dm: &[E]) -> Vec<E> {
        let c = self.in_channels;
        let tps = self.tiles_per_sample();
        let t_all = self.batch * tps;
        let u = self.winograd_filters(weight);
        let dv = self.winograd_input_products(&u, dm);
        drop(u);
        let (th, tw) = self.tile_grid();
        let (hp, wp) = self.winograd_padded_size();
        let (h, w) = (self.in_h, self.in_w);
        let mut dx = vec![E::zero(); self.batch * c * h * w];
        dx.par_chunks_mut((h * w).max(1))
            .enumerate()
            .for_each(|(plane, dx_plane)| {
                let (bi, ci) = (plane / c, plane % c);
                let mut padded = vec![E::zero(); hp * wp];
                // B along each tile's rows, summed over the overlapping windows of one tile row.
                let mut rows = vec![E::zero(); 4 * wp];
                for ty in 0..th {
                    rows.fill(E::zero());
                    let t0 = bi * tps + ty * tw;
                    for (i, h_i) in rows.chunks_exact_mut(wp).enumerate() {
                        let g = |j: usize| &dv[((4 * i + j) * c + ci) * t_all + t0..][..tw];
                        let (v0, v1, v2, v3) = (g(0), g(1), g(2), g(3));
                        for tx in 0..tw {
                            let win = &mut h_i[2 * tx..2 * tx + 4];
                            win[0] += v0[tx];
                            win[1] += v1[tx] - v2[tx] + v3[tx];
                            win[2] += v1[tx] + v2[tx] - v0[tx];
                            win[3] -= v3[tx];
                        }
                    }
                    // Then B down the columns, onto window rows 2ty..2ty+4.
                    let (h0, rest) = rows.split_at(wp);
                    let (h1, rest) = rest.split_at(wp);
                    let (h2, h3) = rest.split_at(wp);
                    let dst = &mut padded[2 * ty * wp..(2 * ty + 4) * wp];
                    let (p0, rest) = dst.split_at_mut(wp);
                    let (p1, rest) = rest.split_at_mut(wp);
                    let (p2, p3) = rest.split_at_mut(wp);
                    for x in 0..wp {
                        p0[x] += h0[x];
                        p1[x] += h1[x] - h2[x] + h3[x];
                        p2[x] += h1[x] + h2[x] - h0[x];
                        p3[x] -= h3[x];
                    }
                }
                self.unpad_plane(&padded, wp, dx_plane);
            });
        dx
    }

    /// Weight gradient from `dM` and the input: `dU_ξ = dM_ξ · V_ξᵀ`, then `Gᵀ·dU·G`.
    fn winograd_weight_grad<E: Float>(&self, x: &[E], dm: &[E]) -> Vec<E> {
        let (c, o) = (self.in_channels, self.out_channels);
        let v = self.winograd_inputs(x);
        let du = self.winograd_weight_products(dm, &v);
        drop(v);
        let mut dw = vec![E::zero(); o * c * 9];
        dw.par_chunks_mut((c * 9).max(1)).enumerate().for_each(|(oc, dw_o)| {
            for (ci, dg) in dw_o.chunks_exact_mut(9).enumerate() {
                let at = |xi: usize| du[(xi * o + oc) * c + ci];
                let t: [[E; 4]; 4] = std::array::from_fn(|i| std::array::from_fn(|j| at(4 * i + j)));
                let g = separable(t, filter_1d_transposed);
                for (d, s) in dg.iter_mut().zip(g.iter().flatten()) {
                    *d = *s;
                }
            }
        });
        dw
    }

    /// Input and weight gradients by Winograd, each when asked for.
    pub(crate) fn winograd_backward<E: Float>(
        &self,
        x: Option<&[E]>,
        weight: Option<&[E]>,
        dy: &[E],
    ) -> (Option<Vec<E>>, Option<Vec<E>>) {
        if self.kernel_h == 5 {
            return self.winograd5_backward(x, weight, dy);
        }
        let dm = self.winograd_output_grads(dy);
        let dx = weight.map(|w| self.winograd_input_grad(w, &dm));
        let dw = x.map(|x| self.winograd_weight_grad(x, &dm));
        (dx, dw)
    }
}

/// Transform position `xi` of a `[rows][points][cols]` buffer (`U`, `V`, `dM`): the
/// `rows × cols` matrix one of the GEMMs reads.
pub(super) fn at_xi<E>(buf: &[E], xi: usize, rows: usize, points: usize, cols: usize) -> MatRef<'_, E> {
    MatRef::strided(&buf[xi * cols..], rows, cols, points * cols, 1)
}

/// `T·X·Tᵀ` for a square `X`, where `f` multiplies a vector by `T`: `f` along every row, then
/// down every column.
#[inline(always)]
pub(super) fn separable<E: Float, const I: usize, const O: usize>(
    x: [[E; I]; I],
    f: impl Fn([E; I]) -> [E; O],
) -> [[E; O]; O] {
    let rows: [[E; O]; I] = x.map(&f);
    let cols: [[E; O]; O] = std::array::from_fn(|q| f(std::array::from_fn(|i| rows[i][q])));
    // `cols[q][r]` is entry (r, q).
    std::array::from_fn(|r| std::array::from_fn(|q| cols[q][r]))
}

/// `G·g` for `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`.
#[inline(always)]
fn filter_1d<E: Float>([g0, g1, g2]: [E; 3]) -> [E; 4] {
    let half = E::from(0.5).expect("0.5 is representable");
    let (even, odd) = ((g0 + g2) * half, g1 * half);
    [g0, even + odd, even - odd, g2]
}

/// `Gᵀ·u`, the transpose of [`filter_1d`].
#[inline(always)]
fn filter_1d_transposed<E: Float>([u0, u1, u2, u3]: [E; 4]) -> [E; 3] {
    let half = E::from(0.5).expect("0.5 is representable");
    let (sum, diff) = ((u1 + u2) * half, (u1 - u2) * half);
    [u0 + sum, diff, sum + u3]
}
