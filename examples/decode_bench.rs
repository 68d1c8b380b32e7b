//! Decode benchmark: ms per JPEG -> 224x224 CHW tensor bytes, for the
//! 2124x2056 and 1444x1444 photos of a folder, single-threaded and with 2
//! threads:
//! - `fast`: palm-cnn's default path (DCT-scaled decoding, the dedicated
//!   1/8 and 1/4 decoder);
//! - `jpeg-decoder scaled`: the same scale through `jpeg-decoder` (the fast
//!   path before the dedicated decoder);
//! - `exact`: full-size decode, then resize (the course's path).
//!
//! It also checks that the dedicated decoder gives the same bytes as
//! `jpeg-decoder` at the same scale, and reports the fast-vs-exact difference.
//! If IMG_DIR's parent holds the whole iChallenge-PM layout, it then times the
//! loader itself: decoding the 400 training images into its cache (2
//! threads), then 5 epochs of shuffled batches of 10 from that cache.
//! Used by `bench/decode_bench.py`.
//!
//! `cargo run --release --example decode_bench -- IMG_DIR [N] [OUT_RAW]`
//! With OUT_RAW, writes the exact-path BGR HWC bytes of the first 2124x2056
//! image (for comparison with OpenCV).
use std::path::{Path, PathBuf};
use std::time::Instant;

use palm_cnn::data::image::{decode, decode_to_chw, read_header};
use palm_cnn::data::transform::{resize_linear, to_chw};
use palm_cnn::data::{ChannelOrder, DecodeMode, LoadOptions, PalmLoader};
use palm_cnn::dfdx::shapes::HasShape;
use rayon::prelude::*;

type Files = Vec<(PathBuf, Vec<u8>)>;
/// One way of turning a file's bytes into a tensor.
type Work<'a> = &'a (dyn Fn(&Path, &[u8]) + Sync);

/// `jpeg-decoder` at the smallest DCT scale giving >= 224 px, resized and laid
/// out like the loader does.
fn jpeg_decoder_scaled(bytes: &[u8]) -> Vec<u8> {
    let mut d = jpeg_decoder::Decoder::new(bytes);
    d.read_info().unwrap();
    let info = d.info().unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let k = [1, 2, 4, 8]
        .into_iter()
        .find(|k| (w * k).div_ceil(8) >= 224 && (h * k).div_ceil(8) >= 224)
        .unwrap();
    d.scale((w * k).div_ceil(8) as u16, (h * k).div_ceil(8) as u16).unwrap();
    let rgb = d.decode().unwrap();
    let info = d.info().unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    to_chw(&resize_linear(&rgb, w, h, 3, 224, 224), 224, 224, ChannelOrder::Bgr)
}

fn ms_per_image(files: &Files, threads: usize, work: Work) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| files.par_iter().for_each(|(p, b)| work(p, b))); // warm-up
    let t = Instant::now();
    pool.install(|| files.par_iter().for_each(|(p, b)| work(p, b)));
    t.elapsed().as_secs_f64() * 1000.0 / files.len() as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).expect("usage: decode_bench IMG_DIR [N] [OUT_RAW]"));
    let n: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(40);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    paths.sort();
    let mut groups: Vec<((usize, usize), Files)> = vec![((2124, 2056), vec![]), ((1444, 1444), vec![])];
    for p in paths {
        let b = std::fs::read(&p).unwrap();
        let h = read_header(&b, &p).unwrap();
        if let Some((_, files)) = groups.iter_mut().find(|(size, _)| *size == (h.width, h.height)) {
            if files.len() < n {
                files.push((p, b));
            }
        }
    }
    let fast = |p: &Path, b: &[u8]| {
        decode_to_chw(b, p, 224, DecodeMode::Fast, ChannelOrder::Bgr).unwrap();
    };
    let exact = |p: &Path, b: &[u8]| {
        decode_to_chw(b, p, 224, DecodeMode::Exact, ChannelOrder::Bgr).unwrap();
    };
    let before = |_: &Path, b: &[u8]| {
        jpeg_decoder_scaled(b);
    };
    for ((w, h), files) in &groups {
        if files.is_empty() {
            continue;
        }
        println!("images: {} ({w}x{h})", files.len());
        let paths: [(&str, Work); 3] = [("fast", &fast), ("jpeg-decoder scaled", &before), ("exact", &exact)];
        for (name, work) in paths {
            for threads in [1, 2] {
                let ms = ms_per_image(files, threads, work);
                println!("rust {name} {w}x{h} {threads} thread(s): {ms:.2} ms/image");
            }
        }
        let (mut differing, mut max, mut sum, mut count) = (0usize, 0i32, 0f64, 0f64);
        for (p, b) in files {
            let f = decode_to_chw(b, p, 224, DecodeMode::Fast, ChannelOrder::Bgr).unwrap();
            differing += f.iter().zip(jpeg_decoder_scaled(b)).filter(|(a, b)| **a != *b).count();
            let e = decode_to_chw(b, p, 224, DecodeMode::Exact, ChannelOrder::Bgr).unwrap();
            for (x, y) in f.iter().zip(&e) {
                let d = (*x as i32 - *y as i32).abs();
                max = max.max(d);
                sum += d as f64;
                count += 1.0;
            }
        }
        println!("fast vs jpeg-decoder scaled {w}x{h}: {differing} differing bytes");
        println!(
            "fast vs exact {w}x{h}: max |diff| {max} levels ({:.4} in [-1,1] units), mean {:.3} levels ({:.5})",
            max as f64 / 127.5,
            sum / count,
            sum / count / 127.5
        );
    }
    if let Some(out) = args.get(3) {
        let (p, b) = &groups[0].1[0];
        let img = decode(b, p, DecodeMode::Exact, None).unwrap();
        let small = resize_linear(&img.data, img.width, img.height, 3, 224, 224);
        let bgr: Vec<u8> = small.chunks_exact(3).flat_map(|px| [px[2], px[1], px[0]]).collect();
        std::fs::write(out, bgr).unwrap();
        println!("wrote exact-path BGR HWC bytes of {} to {out}", p.display());
    }
    if let Some(root) = dir.parent().filter(|r| palm_cnn::data::open(r).is_ok()) {
        loader_pass(root);
    }
}

/// The loader end to end: one decode per file, then epochs from the cache.
fn loader_pass(root: &Path) {
    let ds = palm_cnn::data::open(root).unwrap();
    let loader = PalmLoader::<224>::new(&ds.train, LoadOptions::default());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let t = Instant::now();
    pool.install(|| loader.preload()).unwrap();
    println!(
        "loader: {} training images decoded into the cache in {:.2} s (2 threads)",
        loader.cached(),
        t.elapsed().as_secs_f64()
    );
    let dev = palm_cnn::dfdx::tensor::Cpu::default();
    for epoch in 0..5 {
        let t = Instant::now();
        let mut images = 0;
        for batch in loader.train_epoch(&dev, 10, 42, epoch).unwrap() {
            images += batch.unwrap().0.shape().0;
        }
        println!(
            "loader: epoch {} served {images} images in {:.0} ms ({} in the cache)",
            epoch + 1,
            t.elapsed().as_secs_f64() * 1000.0,
            loader.cached()
        );
    }
}
