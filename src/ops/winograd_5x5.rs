//! Winograd F(2×2, 5×5) for 5×5 stride-1 convolutions with many input channels (AlexNet conv2).
//!
//! The scheme of F(2×2, 3×3) (winograd.rs) with a 6×6 input window per 2×2 output tile: 36
//! multiplications per tile and channel pair instead of 100, a 2.78× cut in the arithmetic. The
//! interpolation points are 0, ±1, ±2 and ∞ (the Toom–Cook construction of Lavin and Gray):
//!
//! ```text
//! Aᵀ = [1  1  1  1  1  0]     G = [ 1/4     0     0     0     0 ]     Bᵀ = [4  0 −5  0  1  0]
//!      [0  1 −1  2 −2  1]         [−1/6  −1/6  −1/6  −1/6  −1/6 ]          [0 −4 −4  1  1  0]
//!                                 [−1/6   1/6  −1/6   1/6  −1/6 ]          [0  4 −4 −1  1  0]
//!                                 [1/24  1/12   1/6   1/3   2/3 ]          [0 −2 −1  2  1  0]
//!                                 [1/24 −1/12   1/6  −1/3   2/3 ]          [0  2 −1 −2  1  0]
//!                                 [   0     0     0     0     1 ]          [0  4  0 −5  0  1]
//! ```
//!
//! `y = Aᵀ·[(G·g) ⊙ (Bᵀ·d)]` is the correlation of six inputs `d` with five weights `g` at two
//! outputs; the unit tests below check it exactly, and each transposed transform against its
//! matrix, on every basis vector. The 2-D transforms apply these along rows, then columns.
//!
//! Buffers and GEMMs are laid out as in winograd.rs, with 36 transform positions. The transforms
//! work one tile at a time on 6×6 arrays: at 96 and 256 channels they are a few percent of the
//! GEMMs' arithmetic.
//!
//! Accuracy: larger coefficients than F(2×2, 3×3)'s (Bᵀ up to 5, G from 1/24 to 2/3) give more
//! rounding; `winograd_f32_accuracy_bound` in tests/ops_reference.rs states the bound at AlexNet
//! conv2's depth.

use super::conv2d::Conv2dGeometry;
use super::winograd::separable;
use super::Float;
use rayon::prelude::*;
use std::array::from_fn;

/// Window side: 2 outputs + 5 taps − 1.
const N: usize = 6;
/// Positions of the 6×6 transform domain.
const XI: usize = N * N;
/// Kernel side.
const K: usize = 5;

#[inline(always)]
fn constant<E: Float>(v: f64) -> E {
    E::from(v).expect("small constants are representable")
}

/// `Bᵀ·d`.
#[inline(always)]
fn input_1d<E: Float>([d0, d1, d2, d3, d4, d5]: [E; N]) -> [E; N] {
    let (two, four, five) = (constant::<E>(2.0), constant::<E>(4.0), constant::<E>(5.0));
    let (a, b) = (d4 - four * d2, d3 - four * d1);
    let (c, e) = (d4 - d2, two * (d3 - d1));
    [
        four * d0 - five * d2 + d4,
        a + b,
        a - b,
        c + e,
        c - e,
        four * d1 - five * d3 + d5,
    ]
}

/// `B·v`, the transpose of [`input_1d`].
#[inline(always)]
fn input_1d_transposed<E: Float>([v0, v1, v2, v3, v4, v5]: [E; N]) -> [E; N] {
    let (two, four, five) = (constant::<E>(2.0), constant::<E>(4.0), constant::<E>(5.0));
    let (sum12, diff12, sum34, diff34) = (v1 + v2, v1 - v2, v3 + v4, v3 - v4);
    [
        four * v0,
        four * (v5 - diff12) - two * diff34,
        -(five * v0 + four * sum12 + sum34),
        diff12 + two * diff34 - five * v5,
        v0 + sum12 + sum34,
        v5,
    ]
}

/// `G·g`.
#[inline(always)]
fn filter_1d<E: Float>([g0, g1, g2, g3, g4]: [E; K]) -> [E; N] {
    let (quarter, sixth, twentyfourth) = (constant::<E>(0.25), constant::<E>(1.0 / 6.0), constant::<E>(1.0 / 24.0));
    let (two, four, eight, sixteen) = (
        constant::<E>(2.0),
        constant::<E>(4.0),
        constant::<E>(8.0),
        constant::<E>(16.0),
    );
    let (even, odd) = (g0 + g2 + g4, g1 + g3);
    let (even2, odd2) = (g0 + four * g2 + sixteen * g4, two * g1 + eight * g3);
    [
        quarter * g0,
        -sixth * (even + odd),
        -sixth * (even - odd),
        twentyfourth * (even2 + odd2),
        twentyfourth * (even2 - odd2),
        g4,
    ]
}

/// `Gᵀ·u`, the transpose of [`filter_1d`].
#[inline(always)]
fn filter_1d_transposed<E: Float>([u0, u1, u2, u3, u4, u5]: [E; N]) -> [E; K] {
    let (quarter, sixth, twelfth, twentyfourth) = (
        constant::<E>(0.25),
        constant::<E>(1.0 / 6.0),
        constant::<E>(1.0 / 12.0),
        constant::<E>(1.0 / 24.0),
    );
    let (third, two_thirds) = (constant::<E>(1.0 / 3.0), constant::<E>(2.0 / 3.0));
    let (sum12, diff12, sum34, diff34) = (u1 + u2, u1 - u2, u3 + u4, u3 - u4);
    [
        quarter * u0 - sixth * sum12 + twentyfourth * sum34,
        twelfth * diff34 - sixth * diff12,
        sixth * (sum34 - sum12),
        third * diff34 - sixth * diff12,
        two_thirds * sum34 - sixth * sum12 + u5,
    ]
}

/// `Aᵀ·m`: the tile's two outputs.
#[inline(always)]
fn output_1d<E: Float>([m0, m1, m2, m3, m4, m5]: [E; N]) -> [E; 2] {
    let two = constant::<E>(2.0);
    [m0 + m1 + m2 + m3 + m4, m1 - m2 + two * (m3 - m4) + m5]
}

/// `A·[a, b]`, the transpose of [`output_1d`].
#[inline(always)]
fn output_1d_transposed<E: Float>([a, b]: [E; 2]) -> [E; N] {
    let two = constant::<E>(2.0);
    [a, a + b, a - b, a + two * b, a - two * b, b]
}

/// `dst[k][x] = f([src[0][x], …, src[I − 1][x]])[k]` for every `x`: one 1-D transform per lane,
/// across all tiles of a sample (or all columns of a window row) at once, so that the loop runs
/// on whole vectors. One tile at a time, the gathers and scatters took 2–5× longer.
#[inline(always)]
fn lanes<E: Float, const I: usize, const O: usize>(src: [&[E]; I], dst: [&mut [E]; O], f: impl Fn([E; I]) -> [E; O]) {
    let len = dst[0].len();
    let src = src.map(|s| &s[..len]);
    let mut dst = dst.map(|d| &mut d[..len]);
    for x in 0..len {
        for (row, v) in dst.iter_mut().zip(f(from_fn(|i| src[i][x]))) {
            row[x] = v;
        }
    }
}

/// `O` disjoint rows of `len` elements of `buf`, starting at `start + k·stride`.
fn rows_mut<E, const O: usize>(buf: &mut [E], start: usize, stride: usize, len: usize) -> [&mut [E]; O] {
    buf.get_disjoint_mut(from_fn(|k| start + k * stride..start + k * stride + len))
        .expect("rows lie inside the buffer and apart")
}

/// `O` rows of `len` elements of `buf`, starting at `start + k·stride`.
fn rows<E, const O: usize>(buf: &[E], start: usize, stride: usize, len: usize) -> [&[E]; O] {
    from_fn(|k| &buf[start + k * stride..][..len])
}

impl Conv2dGeometry {
    /// `U = G·g·Gᵀ` for every filter, as `[O][36][C]`.
    fn winograd5_filters<E: Float>(&self, weight: &[E]) -> Vec<E> {
        let c = self.in_channels;
        let mut u = vec![E::zero(); self.out_channels * XI * c];
        u.par_chunks_mut(XI * c).enumerate().for_each(|(o, u_o)| {
            for ci in 0..c {
                let g = &weight[(o * c + ci) * K * K..][..K * K];
                let g: [[E; K]; K] = from_fn(|i| from_fn(|j| g[K * i + j]));
                for (xi, v) in separable(g, filter_1d).iter().flatten().enumerate() {
                    u_o[xi * c + ci] = *v;
                }
            }
        });
        u
    }

    /// `V = Bᵀ·d·B` for every tile of every channel, as `[C][36][T]`.
    fn winograd5_inputs<E: Float>(&self, x: &[E]) -> Vec<E> {
        let (c, b) = (self.in_channels, self.batch);
        let tps = self.tiles_per_sample();
        let t_all = b * tps;
        let (th, tw) = self.tile_grid();
        let (hp, wp) = self.winograd_padded_size();
        let plane_len = self.in_h * self.in_w;
        let mut v = vec![E::zero(); c * XI * t_all];
        v.par_chunks_mut(XI * t_all).enumerate().for_each(|(ci, v_c)| {
            let mut padded = vec![E::zero(); hp * wp];
            // cols[i][ty][x]: Bᵀ down the columns of window rows 2ty..2ty+6; d[j][tile]: column
            // 2tx + j of one row i of every tile's window.
            let mut cols = vec![E::zero(); N * th * wp];
            let mut d = vec![E::zero(); N * tps];
            for bi in 0..b {
                self.pad_plane(&x[(bi * c + ci) * plane_len..][..plane_len], &mut padded, wp);
                for ty in 0..th {
                    let src = rows(&padded, 2 * ty * wp, wp, wp);
                    lanes(src, rows_mut(&mut cols, ty * wp, th * wp, wp), input_1d);
                }
                // Then Bᵀ along each tile's six columns.
                for i in 0..N {
                    for (j, d_j) in d.chunks_exact_mut(tps).enumerate() {
                        for (ty, d_row) in d_j.chunks_exact_mut(tw).enumerate() {
                            let src = &cols[(i * th + ty) * wp + j..];
                            for (dst, val) in d_row.iter_mut().zip(src.iter().step_by(2)) {
                                *dst = *val;
                            }
                        }
                    }
                    let dst = rows_mut(v_c, N * i * t_all + bi * tps, t_all, tps);
                    lanes(rows(&d, 0, tps, tps), dst, input_1d);
                }
            }
        });
        v
    }

    /// Forward pass by Winograd F(2×2, 5×5): `[B, O, Ho, Wo]`, bias included.
    pub(super) fn winograd5_forward<E: Float>(&self, x: &[E], weight: &[E], bias: Option<&[E]>) -> Vec<E> {
        let o = self.out_channels;
        let tps = self.tiles_per_sample();
        let t_all = self.batch * tps;
        let u = self.winograd5_filters(weight);
        let v = self.winograd5_inputs(x);
        let m = self.winograd_products(&u, &v);
        drop(v);
        // Y = Aᵀ·M·A per tile, cropped, plus the bias.
        let (oh, ow) = (self.out_h, self.out_w);
        let tw = self.tile_grid().1;
        let mut out = vec![E::zero(); self.batch * o * oh * ow];
        out.par_chunks_mut((oh * ow).max(1)).enumerate().for_each(|(plane, y)| {
            let (bi, oc) = (plane / o, plane % o);
            let b = bias.map_or(E::zero(), |bias| bias[oc]);
            // s[i][q][tile]: Aᵀ along row i of every tile; z[q][r][tile]: output (2ty + r, 2tx + q).
            let (mut s, mut z) = (vec![E::zero(); N * 2 * tps], vec![E::zero(); 4 * tps]);
            for i in 0..N {
                let src = rows(&m, (N * i * o + oc) * t_all + bi * tps, o * t_all, tps);
                lanes(src, rows_mut(&mut s, 2 * i * tps, tps, tps), output_1d);
            }
            for q in 0..2 {
                lanes(
                    rows(&s, q * tps, 2 * tps, tps),
                    rows_mut(&mut z, 2 * q * tps, tps, tps),
                    output_1d,
                );
            }
            for (oy, dst) in y.chunks_exact_mut(ow).enumerate() {
                let (ty, r) = (oy / 2, oy % 2);
                for q in 0..2 {
                    let src = &z[(2 * q + r) * tps + ty * tw..][..tw];
                    for (d, val) in dst[q..].iter_mut().step_by(2).zip(src) {
                        *d = b + *val;
                    }
                }
            }
        });
        out
    }

    /// `dM = A·dY·Aᵀ` for every tile of every output channel, as `[O][36][T]` (output pixels
    /// beyond the image, in cropped tiles, count as zero).
    fn winograd5_output_grads<E: Float>(&self, dy: &[E]) -> Vec<E> {
        let o = self.out_channels;
        let (oh, ow) = (self.out_h, self.out_w);
        let (th, tw) = self.tile_grid();
        let tps = th * tw;
        let t_all = self.batch * tps;
        let mut dm = vec![E::zero(); o * XI * t_all];
        dm.par_chunks_mut(XI * t_all).enumerate().for_each(|(oc, dm_o)| {
            // d[r][q][tile]: dY at (2ty + r, 2tx + q), zero beyond the image; e[r][j][tile]: A
            // along the tile's rows.
            let mut d = vec![E::zero(); 4 * tps];
            let mut e = vec![E::zero(); 2 * N * tps];
            for bi in 0..self.batch {
                let plane = &dy[(bi * o + oc) * oh * ow..][..oh * ow];
                for (oy, row) in plane.chunks_exact(ow).enumerate() {
                    let (ty, r) = (oy / 2, oy % 2);
                    for (ox, val) in row.iter().enumerate() {
                        d[(2 * r + ox % 2) * tps + ty * tw + ox / 2] = *val;
                    }
                }
                for r in 0..2 {
                    let src = rows(&d, 2 * r * tps, tps, tps);
                    lanes(src, rows_mut(&mut e, r * N * tps, tps, tps), output_1d_transposed);
                }
                // Then A down each column j, into positions (i, j).
                for j in 0..N {
                    let dst = rows_mut(dm_o, j * t_all + bi * tps, N * t_all, tps);
                    lanes(rows(&e, j * tps, N * tps, tps), dst, output_1d_transposed);
                }
            }
        });
        dm
    }

    /// Input gradient from `dM`: `dV_ξ = U_ξᵀ · dM_ξ`, then `B·dV·Bᵀ` added over every window.
    fn winograd5_input_grad<E: Float>(&self, weight: &[E], dm: &[E]) -> Vec<E> {
        let c = self.in_channels;
        let tps = self.tiles_per_sample();
        let t_all = self.batch * tps;
        let u = self.winograd5_filters(weight);
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
                // k[col][tile]: B along row i of every tile's window; rows[i][ty][x]: those
                // summed over the overlapping windows of each tile row; cols: B down the columns
                // of one tile row, added onto window rows 2ty..2ty+6 of the padded plane.
                let mut k = vec![E::zero(); N * tps];
                let mut rows_i = vec![E::zero(); N * th * wp];
                let mut cols = vec![E::zero(); N * wp];
                let mut padded = vec![E::zero(); hp * wp];
                for i in 0..N {
                    let src = rows(&dv, (N * i * c + ci) * t_all + bi * tps, c * t_all, tps);
                    lanes(src, rows_mut(&mut k, 0, tps, tps), input_1d_transposed);
                    for (col, k_col) in k.chunks_exact(tps).enumerate() {
                        for (ty, k_row) in k_col.chunks_exact(tw).enumerate() {
                            let dst = &mut rows_i[(i * th + ty) * wp + col..];
                            for (d, val) in dst.iter_mut().step_by(2).zip(k_row) {
                                *d += *val;
                            }
                        }
                    }
                }
                for ty in 0..th {
                    let src = rows(&rows_i, ty * wp, th * wp, wp);
                    lanes(src, rows_mut(&mut cols, 0, wp, wp), input_1d_transposed);
                    for (d, val) in padded[2 * ty * wp..(2 * ty + N) * wp].iter_mut().zip(&cols) {
                        *d += *val;
                    }
                }
                self.unpad_plane(&padded, wp, dx_plane);
            });
        dx
    }

    /// Weight gradient from `dM` and the input: `dU_ξ = dM_ξ · V_ξᵀ`, then `Gᵀ·dU·G`.
    fn winograd5_weight_grad<E: Float>(&self, x: &[E], dm: &[E]) -> Vec<E> {
        let (c, o) = (self.in_channels, self.out_channels);
        let v = self.winograd5_inputs(x);
        let du = self.winograd_weight_products(dm, &v);
        drop(v);
        let mut dw = vec![E::zero(); o * c * K * K];
        dw.par_chunks_mut((c * K * K).max(1))
            .enumerate()
            .for_each(|(oc, dw_o)| {
                for (ci, dg) in dw_o.chunks_exact_mut(K * K).enumerate() {
                    let t: [[E; N]; N] = from_fn(|i| from_fn(|j| du[((N * i + j) * o + oc) * c + ci]));
                    for (d, s) in dg.iter_mut().zip(separable(t, filter_1d_transposed).iter().flatten()) {
                        *d = *s;
                    }
                }
            });
        dw
    }

    /// Input and weight gradients by Winograd F(2×2, 5×5), each when asked for.
    pub(super) fn winograd5_backward<E: Float>(
        &self,
        x: Option<&[E]>,
        weight: Option<&[E]>,
        dy: &[E],
    ) -> (Option<Vec<E>>, Option<Vec<E>>) {
        let dm = self.winograd5_output_grads(dy);
        let dx = weight.map(|w| self.winograd5_input_grad(w, &dm));
        let dw = x.map(|x| self.winograd5_weight_grad(x, &dm));
        (dx, dw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit<const L: usize>(k: usize) -> [f64; L] {
        from_fn(|i| if i == k { 1.0 } else { 0.0 })
    }

    /// Every pair of basis vectors: `Aᵀ·[(G·g) ⊙ (Bᵀ·d)]` is 1 at output `i` exactly when the
    /// input tap `l` meets the weight `k` there (`l = i + k`), else 0. The transforms are
    /// bilinear, so this proves the identity for all inputs.
    #[test]
    fn transforms_compute_the_correlation_exactly() {
        for l in 0..N {
            for k in 0..K {
                let (v, u) = (input_1d(unit::<N>(l)), filter_1d(unit::<K>(k)));
                let y = output_1d(from_fn(|j| u[j] * v[j]));
                for (i, yi) in y.iter().enumerate() {
                    let expected = if l == i + k { 1.0 } else { 0.0 };
                    assert!((yi - expected).abs() < 1e-14, "d = e{l}, g = e{k}: y{i} = {yi}");
                }
            }
        }
    }

    /// Each transposed transform against the matrix its forward one multiplies by:
    /// `⟨e_a, Tᵀ·e_b⟩ = ⟨T·e_a, e_b⟩`.
    #[test]
    fn transposed_transforms_match_their_matrices() {
        for a in 0..N {
            for b in 0..N {
                assert_eq!(
                    input_1d_transposed(unit::<N>(b))[a],
                    input_1d(unit::<N>(a))[b],
                    "B ({a}, {b})"
                );
            }
            for b in 0..2 {
                assert_eq!(
                    output_1d_transposed(unit::<2>(b))[a],
                    output_1d(unit::<N>(a))[b],
                    "A ({a}, {b})"
                );
            }
        }
        for a in 0..K {
            for b in 0..N {
                let (t, f) = (filter_1d_transposed(unit::<N>(b))[a], filter_1d(unit::<K>(a))[b]);
                assert!((t - f).abs() < 1e-15, "G ({a}, {b}): {t} against {f}");
            }
        }
    }
}
