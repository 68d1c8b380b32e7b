//! Image decoding: JPEG (optionally DCT-scaled) and PNG, to interleaved RGB bytes.
//!
//! Pixel formats are converted like `cv2.imread(path)` with its default
//! `IMREAD_COLOR` flag, so the course's pipeline sees the same pixels:
//! - grayscale (8-bit JPEG or PNG, with or without alpha): the gray value is
//!   replicated to all three channels;
//! - RGBA / gray+alpha PNG: the alpha channel is dropped (no compositing);
//! - 16-bit PNG: each sample is reduced to its high byte (`v >> 8`);
//! - palette / low-bit-depth PNG: expanded to 8-bit;
//! - CMYK (and YCCK) JPEG: converted with OpenCV's formula
//!   (`R = K' - (255 - C') * K' / 256` on the inverted Adobe samples);
//! - 16-bit (lossless) JPEG: refused with [`DataError::Unsupported`].
//!
//! Anything else (a file that is neither JPEG nor PNG, or one that fails to
//! decode, including truncated files) is a [`DataError::Decode`] naming the file.
//! EXIF orientation is not applied.

use std::io::Cursor;
use std::path::Path;

use super::error::{DataError, Result};

/// A decoded image: `height` rows of `width * 3` bytes, interleaved **RGB**.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes, row-major, R, G, B per pixel.
    pub data: Vec<u8>,
}

/// How JPEGs are decoded before the resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DecodeMode {
    /// Decode at the smallest JPEG DCT scale (1/8, 1/4, 1/2 or 1) that still
    /// gives at least the target size in both dimensions, then resize. The 1/8
    /// and 1/4 scales of common baseline JPEGs (the PALM photos to 224 px) use
    /// a dedicated decoder ([`super::jpeg_scaled`]). For a 2124x2056 photo
    /// this is about 4.5x faster than [`DecodeMode::Exact`] and 5.8x faster
    /// than OpenCV's `imread` + `resize` (`bench/README.md`). Pixel values
    /// differ from the exact path by a mean of 1.6 levels (of 255), up to about
    /// 100 on thin vessels and the field's rim, because each 8x8 block is
    /// averaged before the bilinear resize. Default.
    #[default]
    Fast,
    /// Decode at full size, then resize: the course's path (`imread` + `resize`).
    Exact,
}

/// The header facts of an image, without decoding the pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The container format.
    pub format: ImageFormat,
}

/// Container formats recognised by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// JPEG (baseline, progressive or lossless).
    Jpeg,
    /// PNG.
    Png,
}

fn sniff(bytes: &[u8], path: &Path) -> Result<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        Ok(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok(ImageFormat::Png)
    } else if bytes.is_empty() {
        Err(DataError::decode(path, "empty file"))
    } else {
        Err(DataError::decode(
            path,
            "not an image (neither a JPEG nor a PNG signature)",
        ))
    }
}

/// Reads only the header of a JPEG or PNG held in `bytes`.
pub fn read_header(bytes: &[u8], path: &Path) -> Result<ImageHeader> {
    match sniff(bytes, path)? {
        ImageFormat::Jpeg => {
            let mut d = jpeg_decoder::Decoder::new(Cursor::new(bytes));
            d.read_info().map_err(|e| DataError::decode(path, e.to_string()))?;
            let info = d
                .info()
                .ok_or_else(|| DataError::decode(path, "no JPEG frame header"))?;
            Ok(ImageHeader {
                width: info.width as usize,
                height: info.height as usize,
                format: ImageFormat::Jpeg,
            })
        }
        ImageFormat::Png => {
            let d = png::Decoder::new(Cursor::new(bytes));
            let r = d.read_info().map_err(|e| DataError::decode(path, e.to_string()))?;
            let info = r.info();
            Ok(ImageHeader {
                width: info.width as usize,
                height: info.height as usize,
                format: ImageFormat::Png,
            })
        }
    }
}

/// Decodes a JPEG or PNG held in `bytes` into RGB.
///
/// `path` is used only in error messages. With `min_size = Some((w, h))` and
/// [`DecodeMode::Fast`], a JPEG is decoded at the smallest DCT scale whose
/// output is at least `w` x `h`; otherwise at full size.
pub fn decode(bytes: &[u8], path: &Path, mode: DecodeMode, min_size: Option<(usize, usize)>) -> Result<RgbImage> {
    let img = match sniff(bytes, path)? {
        ImageFormat::Jpeg => decode_jpeg(bytes, path, if mode == DecodeMode::Fast { min_size } else { None })?,
        ImageFormat::Png => decode_png(bytes, path)?,
    };
    if img.width == 0 || img.height == 0 {
        return Err(DataError::decode(path, "image has zero width or height"));
    }
    Ok(img)
}

fn scaled(len: usize, k: usize) -> usize {
    (len * k).div_ceil(8)
}

fn decode_jpeg(bytes: &[u8], path: &Path, min_size: Option<(usize, usize)>) -> Result<RgbImage> {
    let err = |e: jpeg_decoder::Error| DataError::decode(path, e.to_string());
    let mut d = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    d.read_info().map_err(err)?;
    let info = d
        .info()
        .ok_or_else(|| DataError::decode(path, "no JPEG frame header"))?;
    let (fw, fh) = (info.width as usize, info.height as usize);
    if let Some((mw, mh)) = min_size {
        let k = [1usize, 2, 4, 8]
            .into_iter()
            .find(|&k| scaled(fw, k) >= mw && scaled(fh, k) >= mh)
            .unwrap_or(8);
        if k <= 2 {
            // The common case (a 2124x2056 or 1444x1444 photo to 224 px) has a
            // decoder of its own; it declines anything unusual or broken.
            if let Some(img) = super::jpeg_scaled::decode(bytes, k) {
                return Ok(img);
            }
        }
        if k < 8 {
            let (ow, oh) = d.scale(scaled(fw, k) as u16, scaled(fh, k) as u16).map_err(err)?;
            if (ow as usize) < mw || (oh as usize) < mh {
                d.scale(info.width, info.height).map_err(err)?;
            }
        }
    }
    let pixels = d.decode().map_err(err)?;
    let info = d
        .info()
        .ok_or_else(|| DataError::decode(path, "no JPEG frame header"))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let n = w * h;
    use jpeg_decoder::PixelFormat as P;
    let expect = n * info.pixel_format.pixel_bytes();
    if pixels.len() != expect {
        return Err(DataError::decode(
            path,
            format!(
                "decoded {} bytes, expected {expect} (corrupt or unusual JPEG)",
                pixels.len()
            ),
        ));
    }
    let data = match info.pixel_format {
        P::RGB24 => pixels,
        P::L8 => pixels.iter().flat_map(|&g| [g, g, g]).collect(),
        P::L16 => {
            return Err(DataError::unsupported(
                path,
                "16-bit (lossless) JPEG; convert it to an 8-bit JPEG first",
            ))
        }
        P::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                // jpeg-decoder returns non-inverted CMYK; OpenCV works on the
                // inverted samples libjpeg returns for Adobe files.
                let (c, m, y, k) = (
                    255 - p[0] as i32,
                    255 - p[1] as i32,
                    255 - p[2] as i32,
                    255 - p[3] as i32,
                );
                let f = |v: i32| (k - (((255 - v) * k) >> 8)) as u8;
                [f(c), f(m), f(y)]
            })
            .collect(),
    };
    Ok(RgbImage {
        width: w,
        height: h,
        data,
    })
}

fn decode_png(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let err = |e: png::DecodingError| DataError::decode(path, e.to_string());
    let mut d = png::Decoder::new(Cursor::new(bytes));
    d.set_transformations(png::Transformations::normalize_to_color8());
    let mut r = d.read_info().map_err(err)?;
    let mut buf = vec![0u8; r.output_buffer_size()];
    let frame = r.next_frame(&mut buf).map_err(err)?;
    let (w, h) = (frame.width as usize, frame.height as usize);
    let buf = &buf[..frame.buffer_size()];
    if frame.bit_depth != png::BitDepth::Eight {
        return Err(DataError::unsupported(
            path,
            format!("PNG bit depth {:?} after expansion", frame.bit_depth),
        ));
    }
    let rows = buf.chunks_exact(frame.line_size).take(h);
    let mut data = Vec::with_capacity(w * h * 3);
    use png::ColorType as C;
    for row in rows {
        match frame.color_type {
            C::Rgb => data.extend_from_slice(&row[..w * 3]),
            C::Rgba => row[..w * 4]
                .chunks_exact(4)
                .for_each(|p| data.extend_from_slice(&p[..3])),
            C::Grayscale => row[..w].iter().for_each(|&g| data.extend_from_slice(&[g, g, g])),
            C::GrayscaleAlpha => row[..w * 2]
                .chunks_exact(2)
                .for_each(|p| data.extend_from_slice(&[p[0]; 3])),
            C::Indexed => return Err(DataError::unsupported(path, "palette PNG could not be expanded")),
        }
    }
    if data.len() != w * h * 3 {
        return Err(DataError::decode(path, "PNG frame shorter than its header says"));
    }
    Ok(RgbImage {
        width: w,
        height: h,
        data,
    })
}

/// Decodes `bytes` and applies the course transform to `s` x `s`, returning
/// planar CHW bytes in `order` (`3 * s * s` values, before scaling to [-1, 1]).
pub fn decode_to_chw(
    bytes: &[u8],
    path: &Path,
    s: usize,
    mode: DecodeMode,
    order: super::transform::ChannelOrder,
) -> Result<Vec<u8>> {
    let img = decode(bytes, path, mode, Some((s, s)))?;
    let small = super::transform::resize_linear(&img.data, img.width, img.height, 3, s, s);
    Ok(super::transform::to_chw(&small, s, s, order))
}
