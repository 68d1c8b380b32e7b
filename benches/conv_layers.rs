//! Per-layer timing of the convolution kernels on AlexNet's and LeNet-PALM's shapes at batch 10:
//! forward, input gradient and weight gradient, in ms and GFLOP/s (2 FLOP per multiply-add).
//!
//! `cargo bench --bench conv_layers`

use palm_cnn::ops::Conv2dGeometry;
use std::time::Instant;

/// CPU time of this process (all threads), in seconds, from /proc/self/stat (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}

/// Mean wall and CPU milliseconds per call. CPU time shows kernel efficiency even when other
/// processes share the cores; wall time is what a user waits.
fn time_ms(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let (t, c) = (Instant::now(), cpu_seconds());
    for _ in 0..reps {
        f();
    }
    (
        t.elapsed().as_secs_f64() * 1e3 / reps as f64,
        (cpu_seconds() - c) * 1e3 / reps as f64,
    )
}

fn main() {
    let layers = [
        ("alexnet.conv1", 3, 224, 96, 11, 4, 5),
        ("alexnet.conv2", 96, 28, 256, 5, 1, 2),
        ("alexnet.conv3", 256, 14, 384, 3, 1, 1),
        ("alexnet.conv4", 384, 14, 384, 3, 1, 1),
        ("alexnet.conv5", 384, 14, 256, 3, 1, 1),
        ("lenet.conv1", 3, 224, 6, 5, 1, 0),
        ("lenet.conv2", 6, 110, 16, 5, 1, 0),
        ("lenet.conv3", 16, 53, 120, 4, 1, 0),
    ];
    let batch = 10;
    // Reference: the same kind of convolution as one GEMM's worth of work, with a square
    // GEMM-friendly shape (a 1×1 convolution of 512 channels over 32×32 is a 512×512×1024 GEMM).
    let reference = Conv2dGeometry::new(1, 512, (32, 32), 512, (1, 1), 1, 0).unwrap();
    let x: Vec<f32> = (0..512 * 1024).map(|i| (i % 7) as f32).collect();
    let w: Vec<f32> = (0..512 * 512).map(|i| (i % 5) as f32).collect();
    let (wall, cpu) = time_ms(8, || {
        std::hint::black_box(reference.forward(&x, &w, None));
    });
    let gflop = 2.0 * reference.forward_macs() as f64 / 1e9;
    println!(
        "reference GEMM 512x512x1024: {:.1} GFLOP/s [{:.1} per CPU second]",
        gflop / wall * 1e3,
        gflop / cpu.max(1e-9) * 1e3
    );
    println!("wall ms and GFLOP/s per wall second; in brackets GFLOP per CPU second (all threads)");
    println!(
        "{:<14} {:>9} {:>16} {:>9} {:>16} {:>9} {:>16}",
        "layer", "fwd ms", "GFLOP/s", "dx ms", "GFLOP/s", "dw ms", "GFLOP/s"
    );
    for (name, c, hw, o, k, s, p) in layers {
        let g = Conv2dGeometry::new(batch, c, (hw, hw), o, (k, k), s, p).unwrap();
        let x: Vec<f32> = (0..batch * c * hw * hw)
            .map(|i| ((i % 17) as f32 - 8.0) * 0.1)
            .collect();
        let w: Vec<f32> = (0..o * c * k * k).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
        let b = vec![0.1f32; o];
        let dy: Vec<f32> = (0..batch * o * g.out_pixels())
            .map(|i| ((i % 7) as f32 - 3.0) * 0.1)
            .collect();
        let gflop = 2.0 * g.forward_macs() as f64 / 1e9;
        let reps = 4;
        let rate = |(wall, cpu): (f64, f64)| format!("{:.1} [{:.1}]", gflop / wall * 1e3, gflop / cpu.max(1e-9) * 1e3);
        let fwd = time_ms(reps, || {
            std::hint::black_box(g.forward(&x, &w, Some(&b)));
        });
        let dx = time_ms(reps, || {
            std::hint::black_box(g.backward_input(&w, &dy));
        });
        let dw = time_ms(reps, || {
            std::hint::black_box(g.backward_params(&x, &dy));
        });
        println!(
            "{:<14} {:>9.1} {:>16} {:>9.1} {:>16} {:>9.1} {:>16}",
            name,
            fwd.0,
            rate(fwd),
            dx.0,
            rate(dx),
            dw.0,
            rate(dw)
        );
    }
}
