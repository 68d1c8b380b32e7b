//! The course's image transform, replicated exactly.
//!
//! The course (PaddlePaddle, chapter "眼疾识别" / iChallenge-PM) does:
//!
//! ```python
//! img = cv2.imread(path)                 # uint8, H x W x 3, **BGR**
//! img = cv2.resize(img, (224, 224))      # INTER_LINEAR
//! img = np.transpose(img, (2, 0, 1))     # HWC -> CHW
//! img = img.astype('float32') / 255. * 2.0 - 1.0
//! ```
//!
//! [`resize_linear`] reproduces OpenCV's `INTER_LINEAR` for 8-bit images bit for
//! bit (half-pixel centres, no antialiasing, 11-bit fixed-point weights, and the
//! rounding of OpenCV's vectorised vertical pass). It was checked against
//! `cv2.resize` of opencv-python-headless 4.10 on random images, down- and
//! up-scaling, including 2124x2056 and 1444x1444 to 224x224: zero differing bytes.
//! [`to_chw`] then reorders channels ([`ChannelOrder`], BGR by default like the
//! course) and lays the image out as CHW, and [`normalize`] maps a byte `x` to
//! `x / 255 * 2 - 1` (computed in f64 like numpy, then rounded to f32).

/// Channel order of the produced tensors.
///
/// The course reads images with `cv2.imread`, which yields **BGR**; a model
/// trained by the course expects BGR input, hence the default. Choose
/// [`ChannelOrder::Rgb`] for models trained on RGB input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChannelOrder {
    /// Channel 0 is blue, 1 green, 2 red (OpenCV, the course). Default.
    #[default]
    Bgr,
    /// Channel 0 is red, 1 green, 2 blue.
    Rgb,
}

const COEF_BITS: u32 = 11;
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

/// Rounds like OpenCV's `saturate_cast<short>(float)` (round half to even).
fn round_short(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// Per-destination-index source offset and the two 11-bit weights.
///
/// `clamp` reproduces OpenCV's treatment of the x axis (a source position
/// outside the image gets weight (1, 0) at the border pixel); on the y axis
/// OpenCV keeps the raw fraction and clamps the row indices instead, which
/// changes the rounding slightly, so `clamp` is false there.
fn coefficients(src: usize, dst: usize, clamp: bool) -> Vec<(isize, i32, i32)> {
    let inv_scale = dst as f64 / src as f64;
    let scale = 1.0 / inv_scale;
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as isize;
            let mut f = f - s as f32;
            if clamp {
                if s < 0 {
                    f = 0.0;
                    s = 0;
                }
                if s >= src as isize - 1 {
                    f = 0.0;
                    s = src as isize - 1;
                }
            }
            (s, round_short((1.0 - f) * COEF_SCALE), round_short(f * COEF_SCALE))
        })
        .collect()
}

/// Resizes an interleaved 8-bit image exactly like OpenCV's
/// `cv2.resize(img, (dst_w, dst_h))` (`INTER_LINEAR`).
///
/// `src` holds `src_h` rows of `src_w * channels` bytes. Returns `dst_h` rows of
/// `dst_w * channels` bytes.
///
/// # Panics
/// If `src.len() != src_w * src_h * channels` or any size is zero (a
/// programming error: every caller in this crate checks sizes first).
pub fn resize_linear(src: &[u8], src_w: usize, src_h: usize, channels: usize, dst_w: usize, dst_h: usize) -> Vec<u8> {
    assert!(src_w > 0 && src_h > 0 && dst_w > 0 && dst_h > 0 && channels > 0);
    assert_eq!(src.len(), src_w * src_h * channels, "resize_linear: bad buffer size");
    let xs = coefficients(src_w, dst_w, true);
    let ys = coefficients(src_h, dst_h, false);
    let cn = channels;
    let row_len = dst_w * cn;
    // Horizontal pass of one source row into `out` (i32, weights sum 2048).
    let hpass = |y: usize, out: &mut Vec<i32>| {
        out.clear();
        let row = &src[y * src_w * cn..(y + 1) * src_w * cn];
        for &(sx, a0, a1) in &xs {
            let sx = sx as usize;
            let p0 = &row[sx * cn..sx * cn + cn];
            if a1 == 0 {
                out.extend(p0.iter().map(|&v| v as i32 * a0));
            } else {
                let p1 = &row[(sx + 1) * cn..(sx + 1) * cn + cn];
                out.extend(p0.iter().zip(p1).map(|(&v0, &v1)| v0 as i32 * a0 + v1 as i32 * a1));
            }
        }
    };
    let mut dst = Vec::with_capacity(row_len * dst_h);
    let (mut r0, mut r1) = (Vec::with_capacity(row_len), Vec::with_capacity(row_len));
    let (mut have0, mut have1) = (usize::MAX, usize::MAX);
    let clip = |y: isize| y.clamp(0, src_h as isize - 1) as usize;
    for &(sy, b0, b1) in &ys {
        let (y0, y1) = (clip(sy), clip(sy + 1));
        if have0 != y0 {
            if have1 == y0 {
                std::mem::swap(&mut r0, &mut r1);
                std::mem::swap(&mut have0, &mut have1);
            } else {
                hpass(y0, &mut r0);
                have0 = y0;
            }
        }
        if have1 != y1 {
            hpass(y1, &mut r1);
            have1 = y1;
        }
        // OpenCV's vectorised vertical pass (VResizeLinearVec_32s8u):
        // ((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16), then (+2) >> 2, saturated.
        dst.extend(r0.iter().zip(r1.iter()).map(|(&s0, &s1)| {
            let v = (((s0 >> 4) * b0) >> 16) + (((s1 >> 4) * b1) >> 16);
            ((v + 2) >> 2).clamp(0, 255) as u8
        }));
    }
    dst
}

/// Converts an interleaved **RGB** image (`h` rows of `w * 3` bytes) into planar
/// CHW bytes in the requested channel order.
pub fn to_chw(rgb: &[u8], w: usize, h: usize, order: ChannelOrder) -> Vec<u8> {
    let plane = w * h;
    let mut out = vec![0u8; 3 * plane];
    let map: [usize; 3] = match order {
        ChannelOrder::Bgr => [2, 1, 0],
        ChannelOrder::Rgb => [0, 1, 2],
    };
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for (c, &src_c) in map.iter().enumerate() {
            out[c * plane + i] = px[src_c];
        }
    }
    out
}

/// The course's scaling of one byte: `x / 255 * 2 - 1`, evaluated in f64 (like
/// numpy's default) and rounded to f32. Maps 0 to -1.0 and 255 to 1.0.
pub fn normalize(x: u8) -> f32 {
    NORM_LUT[x as usize]
}

static NORM_LUT: [f32; 256] = {
    let mut t = [0f32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as f64 / 255.0 * 2.0 - 1.0) as f32;
        i += 1;
    }
    t
};

/// The whole course transform on an already-decoded interleaved RGB image:
/// resize to `s`x`s` (exact `INTER_LINEAR`), reorder channels, CHW, and scale to
/// [-1, 1]. Returns `3 * s * s` floats.
pub fn course_transform(rgb: &[u8], w: usize, h: usize, s: usize, order: ChannelOrder) -> Vec<f32> {
    let small = resize_linear(rgb, w, h, 3, s, s);
    to_chw(&small, s, s, order).into_iter().map(normalize).collect()
}
