//! Decode benchmark: ms per JPEG -> 224x224 CHW tensor bytes, single-threaded
//! and with 2 threads, fast (DCT-scaled) and exact (full decode) paths; plus
//! the fast-vs-exact pixel difference. Used by `bench/decode_bench.py`.
//!
//! `cargo run --release --example decode_bench -- IMG_DIR [N] [OUT_RAW]`
//! With OUT_RAW, writes the exact-path BGR HWC bytes of the first image (for
//! comparison with OpenCV).
use std::path::{Path, PathBuf};
use std::time::Instant;

use palm_cnn::data::image::decode_to_chw;
use palm_cnn::data::{ChannelOrder, DecodeMode};
use rayon::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).expect("usage: decode_bench IMG_DIR [N] [OUT_RAW]"));
    let n: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(40);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    let bytes: Vec<(PathBuf, Vec<u8>)> = files
        .iter()
        .filter_map(|p| {
            let b = std::fs::read(p).unwrap();
            let h = palm_cnn::data::image::read_header(&b, p).unwrap();
            ((h.width, h.height) == (2124, 2056)).then(|| (p.clone(), b))
        })
        .take(n)
        .collect();
    assert!(!bytes.is_empty(), "no 2124x2056 JPEGs in {}", dir.display());
    let run = |mode: DecodeMode, threads: usize| -> f64 {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let t = Instant::now();
        pool.install(|| {
            bytes.par_iter().for_each(|(p, b)| {
                decode_to_chw(b, p, 224, mode, ChannelOrder::Bgr).unwrap();
            })
        });
        t.elapsed().as_secs_f64() * 1000.0 / bytes.len() as f64
    };
    run(DecodeMode::Fast, 1); // warm-up
    println!("images: {} (2124x2056)", bytes.len());
    for (name, mode) in [("fast", DecodeMode::Fast), ("exact", DecodeMode::Exact)] {
        println!("rust {name} 1 thread: {:.2} ms/image", run(mode, 1));
        println!("rust {name} 2 threads: {:.2} ms/image", run(mode, 2));
    }
    let (mut max, mut sum, mut cnt) = (0i32, 0f64, 0f64);
    for (p, b) in &bytes {
        let f = decode_to_chw(b, p, 224, DecodeMode::Fast, ChannelOrder::Bgr).unwrap();
        let e = decode_to_chw(b, p, 224, DecodeMode::Exact, ChannelOrder::Bgr).unwrap();
        for (x, y) in f.iter().zip(&e) {
            let d = (*x as i32 - *y as i32).abs();
            max = max.max(d);
            sum += d as f64;
            cnt += 1.0;
        }
    }
    println!(
        "fast vs exact: max |diff| {max} levels ({:.4} in [-1,1] units), mean {:.3} levels ({:.5})",
        max as f64 / 127.5,
        sum / cnt,
        sum / cnt / 127.5
    );
    if let Some(out) = args.get(3) {
        let (p, b) = &bytes[0];
        let chw = decode_to_chw(b, Path::new(p), 224, DecodeMode::Exact, ChannelOrder::Bgr).unwrap();
        let mut hwc = vec![0u8; chw.len()];
        for c in 0..3 {
            for i in 0..224 * 224 {
                hwc[i * 3 + c] = chw[c * 224 * 224 + i];
            }
        }
        std::fs::write(out, hwc).unwrap();
        println!("wrote exact-path BGR HWC bytes of {} to {out}", p.display());
    }
}
