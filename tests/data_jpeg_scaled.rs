//! The fast 1/8- and 1/4-scale JPEG decoder against `jpeg-decoder`'s own
//! scaled decoding (an independent implementation) and against hand values,
//! and its refusal of everything it does not handle.
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use palm_cnn::data::image::{decode, RgbImage};
use palm_cnn::data::jpeg_scaled;
use palm_cnn::data::DecodeMode;
use std::path::Path;

/// A deterministic test picture: gradients, hard edges, a disc and noise.
fn picture(width: usize, height: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 58) as i32 - 32
    };
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let (fx, fy) = (x as f64 / width as f64, y as f64 / height as f64);
            let inside = (fx - 0.5).powi(2) + (fy - 0.5).powi(2) < 0.1;
            let stripe = (x / 5 + y / 7) % 2 == 0;
            let base = [
                255.0 * fx,
                if inside { 220.0 } else { 30.0 + 150.0 * fy },
                if stripe { 200.0 } else { 20.0 },
            ];
            for v in base {
                rgb.push((v as i32 + noise()).clamp(0, 255) as u8);
            }
        }
    }
    rgb
}

struct Settings {
    sampling: SamplingFactor,
    quality: u8,
    restart: u16,
    optimized: bool,
    progressive: bool,
    gray: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sampling: SamplingFactor::F_2_2,
            quality: 90,
            restart: 0,
            optimized: false,
            progressive: false,
            gray: false,
        }
    }
}

fn encode(width: usize, height: usize, seed: u64, s: &Settings) -> Vec<u8> {
    let rgb = picture(width, height, seed);
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, s.quality);
    enc.set_sampling_factor(s.sampling);
    enc.set_optimized_huffman_tables(s.optimized);
    enc.set_progressive(s.progressive);
    if s.restart > 0 {
        enc.set_restart_interval(s.restart);
    }
    if s.gray {
        let luma: Vec<u8> = rgb.chunks_exact(3).map(|p| p[1]).collect();
        enc.encode(&luma, width as u16, height as u16, ColorType::Luma).unwrap();
    } else {
        enc.encode(&rgb, width as u16, height as u16, ColorType::Rgb).unwrap();
    }
    out
}

/// `jpeg-decoder` at the scale `block_px / 8`, as RGB.
fn reference(bytes: &[u8], block_px: usize) -> RgbImage {
    let mut d = jpeg_decoder::Decoder::new(bytes);
    d.read_info().unwrap();
    let info = d.info().unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    d.scale((w * block_px).div_ceil(8) as u16, (h * block_px).div_ceil(8) as u16)
        .unwrap();
    let pixels = d.decode().unwrap();
    let info = d.info().unwrap();
    let data = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&g| [g, g, g]).collect(),
        other => panic!("unexpected pixel format {other:?}"),
    };
    RgbImage {
        width: info.width as usize,
        height: info.height as usize,
        data,
    }
}

/// Largest per-byte difference; panics on a size mismatch.
fn max_difference(ours: &RgbImage, reference: &RgbImage, what: &str) -> u8 {
    assert_eq!(
        (ours.width, ours.height),
        (reference.width, reference.height),
        "{what}: output size"
    );
    ours.data
        .iter()
        .zip(&reference.data)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap()
}

const SAMPLINGS: [SamplingFactor; 4] = [
    SamplingFactor::F_1_1,
    SamplingFactor::F_2_1,
    SamplingFactor::F_1_2,
    SamplingFactor::F_2_2,
];

#[test]
fn colour_output_equals_jpeg_decoder_exactly() {
    // Sizes with partial MCUs, one-block images and 1-pixel outputs.
    let sizes: [(usize, usize); 8] = [
        (333, 217),
        (64, 48),
        (17, 9),
        (8, 8),
        (9, 1),
        (1, 30),
        (250, 251),
        (41, 100),
    ];
    let mut case = 0u64;
    for &(w, h) in &sizes {
        for sampling in SAMPLINGS {
            for block_px in [1, 2] {
                // jpeg-decoder picks the smallest scale that is large enough in
                // *either* direction, so for a 1-pixel-thin 1/4 output it decodes
                // at 1/8: no common reference.
                let eighth = (w.div_ceil(8), h.div_ceil(8));
                let quarter = ((2 * w).div_ceil(8), (2 * h).div_ceil(8));
                if block_px == 2 && (eighth.0 >= quarter.0 || eighth.1 >= quarter.1) {
                    continue;
                }
                case += 1;
                let settings = Settings {
                    sampling,
                    quality: [50, 75, 90, 100][case as usize % 4],
                    restart: [0, 1, 3, 7, 0][case as usize % 5],
                    ..Settings::default()
                };
                let bytes = encode(w, h, case, &settings);
                let what = format!(
                    "{w}x{h} sampling {sampling:?} q{} restart {} at {block_px}/8",
                    settings.quality, settings.restart
                );
                let ours = jpeg_scaled::decode(&bytes, block_px).unwrap_or_else(|| panic!("{what}: declined"));
                let diff = max_difference(&ours, &reference(&bytes, block_px), &what);
                assert_eq!(diff, 0, "{what}: differs by up to {diff} levels");
            }
        }
    }
}

#[test]
fn grayscale_output_equals_jpeg_decoder_exactly() {
    for (i, &(w, h)) in [(333, 217), (16, 16), (7, 23), (1, 1)].iter().enumerate() {
        for block_px in [1, 2] {
            let settings = Settings {
                gray: true,
                restart: [0, 2][i % 2],
                quality: 95,
                ..Settings::default()
            };
            let bytes = encode(w, h, i as u64, &settings);
            let ours = jpeg_scaled::decode(&bytes, block_px).expect("declined a grayscale JPEG");
            let diff = max_difference(&ours, &reference(&bytes, block_px), &format!("gray {w}x{h}"));
            assert_eq!(diff, 0, "gray {w}x{h} at {block_px}/8");
        }
    }
}

#[test]
fn flat_blocks_decode_to_their_colour() {
    // Four 16x16 squares of one colour each: at 1/8 every output pixel is the
    // DC term of a flat block, so it must be the square's colour up to JPEG's
    // quantization and colour-conversion rounding (a few levels at q100).
    let colours = [[200u8, 30, 40], [10, 240, 120], [90, 90, 90], [255, 255, 0]];
    let (w, h) = (32usize, 32usize);
    let mut rgb = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let c = colours[(y / 16) * 2 + x / 16];
            rgb[(y * w + x) * 3..][..3].copy_from_slice(&c);
        }
    }
    let mut bytes = Vec::new();
    let mut enc = Encoder::new(&mut bytes, 100);
    enc.set_sampling_factor(SamplingFactor::F_1_1);
    enc.encode(&rgb, w as u16, h as u16, ColorType::Rgb).unwrap();
    let img = jpeg_scaled::decode(&bytes, 1).unwrap();
    assert_eq!((img.width, img.height), (4, 4));
    for y in 0..4 {
        for x in 0..4 {
            let want = colours[(y / 2) * 2 + x / 2];
            let got = &img.data[(y * 4 + x) * 3..][..3];
            for (g, c) in got.iter().zip(want) {
                assert!(g.abs_diff(c) <= 3, "pixel ({x},{y}): {got:?} vs {want:?}");
            }
        }
    }
}

#[test]
fn declines_what_it_does_not_handle() {
    let progressive = encode(
        64,
        64,
        1,
        &Settings {
            progressive: true,
            ..Settings::default()
        },
    );
    assert!(jpeg_scaled::decode(&progressive, 1).is_none(), "progressive");
    // With optimized tables jpeg-encoder writes one scan per component.
    let separate_scans = encode(
        64,
        64,
        1,
        &Settings {
            optimized: true,
            ..Settings::default()
        },
    );
    assert!(
        jpeg_scaled::decode(&separate_scans, 1).is_none(),
        "non-interleaved scans"
    );
    for sampling in [SamplingFactor::F_4_1, SamplingFactor::F_4_2, SamplingFactor::F_1_4] {
        let bytes = encode(
            64,
            64,
            2,
            &Settings {
                sampling,
                ..Settings::default()
            },
        );
        assert!(jpeg_scaled::decode(&bytes, 1).is_none(), "{sampling:?}");
    }
    let mut cmyk = Vec::new();
    Encoder::new(&mut cmyk, 90)
        .encode(&[10u8; 16 * 16 * 4], 16, 16, ColorType::Cmyk)
        .unwrap();
    assert!(jpeg_scaled::decode(&cmyk, 1).is_none(), "CMYK");
    let good = encode(64, 64, 3, &Settings::default());
    assert!(jpeg_scaled::decode(&good, 1).is_some());
    assert!(jpeg_scaled::decode(&good, 4).is_none(), "1/2 scale is not handled");
    assert!(jpeg_scaled::decode(b"not a jpeg", 1).is_none());
    assert!(jpeg_scaled::decode(&[], 1).is_none());
}

#[test]
fn truncated_or_damaged_scans_are_declined_and_reported_by_the_fallback() {
    for restart in [0, 4] {
        let bytes = encode(
            200,
            120,
            4,
            &Settings {
                restart,
                ..Settings::default()
            },
        );
        // Cut anywhere in the scan (also just before EOI): never accepted.
        for cut in [bytes.len() - 2, bytes.len() - 40, bytes.len() / 2, 700] {
            let cut_bytes = &bytes[..cut];
            assert!(
                jpeg_scaled::decode(cut_bytes, 1).is_none(),
                "cut at {cut}, restart {restart}"
            );
        }
        // Through the public decoder, a truncated file is an error naming it.
        let cut_bytes = &bytes[..bytes.len() / 2];
        let err = decode(cut_bytes, Path::new("cut.jpg"), DecodeMode::Fast, Some((25, 15)))
            .expect_err("truncated JPEG decoded");
        assert!(err.to_string().contains("cut.jpg"), "{err}");
    }
    // A lost restart marker is noticed.
    let bytes = encode(
        200,
        120,
        5,
        &Settings {
            restart: 2,
            ..Settings::default()
        },
    );
    let scan = bytes.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let rst = scan
        + bytes[scan..]
            .windows(2)
            .position(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1]))
            .unwrap();
    let mut damaged = bytes.clone();
    damaged[rst + 1] = 0xD5; // RST0 expected first
    assert!(
        jpeg_scaled::decode(&damaged, 1).is_none(),
        "wrong restart marker accepted"
    );
}

#[test]
fn public_fast_path_matches_the_reference_at_the_chosen_scale() {
    // decode(..., Fast, Some(min)) picks 1/8 for 1800x1800 -> 224 and 1/4 for
    // 1444x1444 -> 224 (1444/8 < 224); both go through the fast decoder.
    for (size, block_px) in [(1800usize, 1usize), (1444, 2)] {
        let bytes = encode(size, size, 6, &Settings::default());
        let ours = decode(&bytes, Path::new("x.jpg"), DecodeMode::Fast, Some((224, 224))).unwrap();
        let want = reference(&bytes, block_px);
        let diff = max_difference(&ours, &want, &format!("{size} px"));
        assert_eq!(diff, 0, "{size} px");
    }
}

#[test]
fn random_damage_never_panics() {
    // Flipped bytes and cuts anywhere, headers included: the decoder must
    // return None or a correctly sized image, never panic (debug builds also
    // check every integer operation for overflow here).
    let bytes = encode(
        70,
        45,
        7,
        &Settings {
            restart: 3,
            ..Settings::default()
        },
    );
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let (mut accepted, mut declined) = (0, 0);
    for round in 0..3000 {
        let mut damaged = bytes.clone();
        for _ in 0..1 + next(4) {
            let at = next(damaged.len());
            damaged[at] = next(256) as u8;
        }
        if round % 3 == 0 {
            damaged.truncate(next(damaged.len()));
        }
        for block_px in [1, 2] {
            match jpeg_scaled::decode(&damaged, block_px) {
                Some(img) => {
                    accepted += 1;
                    assert_eq!(img.data.len(), img.width * img.height * 3);
                }
                None => declined += 1,
            }
        }
    }
    // Both outcomes occur, so the damage reached the scan and the headers.
    assert!(
        accepted > 100 && declined > 100,
        "accepted {accepted}, declined {declined}"
    );
}
