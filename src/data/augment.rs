//! Seeded training-time augmentation on CHW float images in [-1, 1].
//!
//! Off by default ([`super::LoadOptions::augment`] is `None`); never applied to
//! validation batches. All geometric changes (flips, rotation, crop-and-resize)
//! are folded into one inverse affine map sampled bilinearly once; pixels that
//! fall outside the source are black (-1.0, like the fundus surround). Then
//! brightness and contrast are applied on the [0, 1] scale and the result is
//! clamped back into [-1, 1].

use rand::{Rng, SeedableRng};

/// Augmentation parameters. Each field at its neutral value turns that part off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Flip left-right with probability 1/2.
    pub hflip: bool,
    /// Flip top-bottom with probability 1/2.
    pub vflip: bool,
    /// Rotate by a uniform angle in `[-max_rotation_deg, max_rotation_deg]`.
    pub max_rotation_deg: f32,
    /// Crop a square whose side is a uniform fraction in `[min_crop, 1]` of the
    /// image side, at a uniform position, and resize it back to full size.
    /// `1.0` disables cropping.
    pub min_crop: f32,
    /// Add a uniform offset in `[-brightness, brightness]` (on the [0, 1] scale).
    pub brightness: f32,
    /// Scale deviations from the image mean by a uniform factor in
    /// `[1 - contrast, 1 + contrast]`.
    pub contrast: f32,
}

impl Default for Augment {
    /// A moderate setting: both flips, ±15°, crops down to 85 %, ±0.1
    /// brightness, ±15 % contrast.
    fn default() -> Self {
        Augment {
            hflip: true,
            vflip: true,
            max_rotation_deg: 15.0,
            min_crop: 0.85,
            brightness: 0.1,
            contrast: 0.15,
        }
    }
}

impl Augment {
    /// All parts off (the identity).
    pub fn none() -> Self {
        Augment {
            hflip: false,
            vflip: false,
            max_rotation_deg: 0.0,
            min_crop: 1.0,
            brightness: 0.0,
            contrast: 0.0,
        }
    }

    /// Augments one CHW image of `s` x `s` pixels in place, with a generator
    /// seeded by `seed` (same seed, same result).
    pub fn apply(&self, img: &mut [f32], channels: usize, s: usize, seed: u64) {
        assert_eq!(img.len(), channels * s * s, "Augment::apply: bad buffer size");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let hf = self.hflip && rng.gen_bool(0.5);
        let vf = self.vflip && rng.gen_bool(0.5);
        let angle = if self.max_rotation_deg > 0.0 {
            rng.gen_range(-self.max_rotation_deg..=self.max_rotation_deg)
                .to_radians()
        } else {
            0.0
        };
        let crop = if self.min_crop < 1.0 {
            rng.gen_range(self.min_crop.max(0.05)..=1.0)
        } else {
            1.0
        };
        let sf = s as f32;
        let slack = sf * (1.0 - crop);
        let (ox, oy) = if slack > 0.0 {
            (rng.gen_range(0.0..=slack), rng.gen_range(0.0..=slack))
        } else {
            (0.0, 0.0)
        };
        let bright = if self.brightness > 0.0 {
            rng.gen_range(-self.brightness..=self.brightness)
        } else {
            0.0
        };
        let contrast = if self.contrast > 0.0 {
            rng.gen_range(1.0 - self.contrast..=1.0 + self.contrast)
        } else {
            1.0
        };

        let geometric = hf || vf || angle != 0.0 || crop < 1.0;
        if geometric {
            let src = img.to_vec();
            let (c, sn) = (angle.cos(), angle.sin());
            let half = sf / 2.0;
            // Centre of the crop window in source pixels.
            let (cx, cy) = (ox + crop * half, oy + crop * half);
            for y in 0..s {
                for x in 0..s {
                    // Output pixel centre relative to the image centre, flipped.
                    let mut u = x as f32 + 0.5 - half;
                    let mut v = y as f32 + 0.5 - half;
                    if hf {
                        u = -u;
                    }
                    if vf {
                        v = -v;
                    }
                    // Rotate, then scale into the crop window.
                    let ru = (c * u - sn * v) * crop;
                    let rv = (sn * u + c * v) * crop;
                    let (sx, sy) = (cx + ru - 0.5, cy + rv - 0.5);
                    for ch in 0..channels {
                        img[ch * s * s + y * s + x] = sample(&src[ch * s * s..(ch + 1) * s * s], s, sx, sy);
                    }
                }
            }
        }
        if bright != 0.0 || contrast != 1.0 {
            let n = img.len() as f32;
            let mean01 = img.iter().map(|&v| (v + 1.0) * 0.5).sum::<f32>() / n;
            for v in img.iter_mut() {
                let p = (*v + 1.0) * 0.5;
                let q = ((p - mean01) * contrast + mean01 + bright).clamp(0.0, 1.0);
                *v = q * 2.0 - 1.0;
            }
        }
    }
}

/// Bilinear sample of one plane at (x, y) in pixel-index coordinates; -1 outside.
fn sample(plane: &[f32], s: usize, x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |xi: f32, yi: f32| -> f32 {
        if xi < 0.0 || yi < 0.0 || xi >= s as f32 || yi >= s as f32 {
            -1.0
        } else {
            plane[yi as usize * s + xi as usize]
        }
    };
    let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1.0, y0) * fx;
    let bottom = at(x0, y0 + 1.0) * (1.0 - fx) + at(x0 + 1.0, y0 + 1.0) * fx;
    top * (1.0 - fy) + bottom * fy
}
