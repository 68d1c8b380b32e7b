//! Per-layer timing of AlexNet's and LeNet-PALM's convolution and fully connected layers at
//! batch 10: forward, input gradient and weight gradient, in ms and GFLOP/s (2 FLOP per
//! multiply-add).
//!
//! `cargo bench --bench conv_layers [-- --json OUT] [--compare-algorithms] [--only PREFIX]`
//!
//! `--compare-algorithms` adds a row for every other algorithm that can compute a convolution
//! (`alexnet.conv3/Im2col` beside `alexnet.conv3`, which runs the one `Conv2dGeometry::new`
//! picks).
//!
//! Convolutions run palm-cnn's kernels (`Conv2dGeometry`); fully connected layers run the matrix
//! products dfdx's `Linear` runs (forward `x·Wᵀ`, input gradient `dy·W`, weight gradient
//! `dyᵀ·x`). `bench/layers.py` runs this beside PyTorch's per-layer timing, in rounds.

use palm_cnn::ops::{Conv2dGeometry, ConvAlgorithm, LinearGeometry};
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

/// Median wall milliseconds per call over `reps` timed calls (after one untimed call), and mean
/// CPU milliseconds. CPU time shows kernel efficiency even when other processes share the cores;
/// wall time is what a user waits.
fn time_ms(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let c = cpu_seconds();
    let mut walls: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    walls.sort_by(f64::total_cmp);
    (walls[reps / 2], (cpu_seconds() - c) * 1e3 / reps as f64)
}

/// One layer's three timings.
struct LayerTiming {
    name: String,
    gflop: f64,
    fwd: (f64, f64),
    dx: (f64, f64),
    dw: (f64, f64),
}

fn conv_layer(name: String, g: Conv2dGeometry) -> LayerTiming {
    let (batch, c, hw, o, k) = (g.batch, g.in_channels, g.in_h, g.out_channels, g.kernel_h);
    let x: Vec<f32> = (0..batch * c * hw * hw)
        .map(|i| ((i % 17) as f32 - 8.0) * 0.1)
        .collect();
    let w: Vec<f32> = (0..o * c * k * k).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
    let b = vec![0.1f32; o];
    let dy: Vec<f32> = (0..batch * o * g.out_pixels())
        .map(|i| ((i % 7) as f32 - 3.0) * 0.1)
        .collect();
    let reps = 5;
    LayerTiming {
        name,
        gflop: 2.0 * g.forward_macs() as f64 / 1e9,
        fwd: time_ms(reps, || {
            std::hint::black_box(g.forward(&x, &w, Some(&b)));
        }),
        dx: time_ms(reps, || {
            std::hint::black_box(g.backward_input(&w, &dy));
        }),
        dw: time_ms(reps, || {
            std::hint::black_box(g.backward_params(&x, &dy));
        }),
    }
}

fn linear_layer(name: String, batch: usize, (inputs, outputs): (usize, usize)) -> LayerTiming {
    // The kernels `ops::linear` runs, on plain buffers (as the convolutions above).
    let g = LinearGeometry { batch, inputs, outputs };
    let x: Vec<f32> = (0..batch * inputs).map(|i| ((i % 17) as f32 - 8.0) * 0.1).collect();
    let w: Vec<f32> = (0..outputs * inputs).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
    let dy: Vec<f32> = (0..batch * outputs).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect();
    let (mut y, mut dx, mut dw, mut db) = (
        vec![0.0f32; batch * outputs],
        vec![0.0f32; batch * inputs],
        vec![0.0f32; outputs * inputs],
        vec![0.0f32; outputs],
    );
    let reps = 7;
    LayerTiming {
        name,
        gflop: 2.0 * (batch * inputs * outputs) as f64 / 1e9,
        fwd: time_ms(reps, || g.forward_add(&mut y, &x, &w)),
        dx: time_ms(reps, || g.input_grad_add(&mut dx, &dy, &w)),
        dw: time_ms(reps, || {
            g.weight_grad_add(&mut dw, &dy, &x);
            g.bias_grad_add(&mut db, &dy);
        }),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json_out = args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1));
    let batch = 10;
    // As the `palm-cnn` binary runs: freed buffers reused rather than faulted in afresh, and
    // subnormals flushed.
    palm_cnn::ops::retain_freed_memory();
    palm_cnn::ops::flush_subnormals();
    // (channels in, input size, channels out, kernel, stride, padding)
    let convs = [
        ("alexnet.conv1", (3, 224, 96, 11, 4, 5)),
        ("alexnet.conv2", (96, 28, 256, 5, 1, 2)),
        ("alexnet.conv3", (256, 14, 384, 3, 1, 1)),
        ("alexnet.conv4", (384, 14, 384, 3, 1, 1)),
        ("alexnet.conv5", (384, 14, 256, 3, 1, 1)),
        ("lenet.conv1", (3, 224, 6, 5, 1, 0)),
        ("lenet.conv2", (6, 110, 16, 5, 1, 0)),
        ("lenet.conv3", (16, 53, 120, 4, 1, 0)),
    ];
    // (inputs, outputs)
    let linears = [
        ("alexnet.fc1", (12_544, 4096)),
        ("alexnet.fc2", (4096, 4096)),
        ("alexnet.fc3", (4096, 1)),
        ("lenet.fc1", (300_000, 64)),
        ("lenet.fc2", (64, 1)),
    ];
    let compare = args.iter().any(|a| a == "--compare-algorithms");
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1));
    let wanted = |name: &str| only.is_none_or(|prefix| name.starts_with(prefix.as_str()));
    let mut timings = Vec::new();
    for (name, (c, hw, o, k, s, p)) in convs.into_iter().filter(|(name, _)| wanted(name)) {
        let g = Conv2dGeometry::new(batch, c, (hw, hw), o, (k, k), s, p).unwrap();
        timings.push(conv_layer(name.to_string(), g));
        let others = [
            ConvAlgorithm::Direct,
            ConvAlgorithm::Pointwise,
            ConvAlgorithm::Im2col,
            ConvAlgorithm::Winograd,
        ]
        .into_iter()
        .filter(|&a| compare && a != g.algorithm());
        for other in others.filter_map(|a| g.with_algorithm(a)) {
            timings.push(conv_layer(format!("{name}/{:?}", other.algorithm()), other));
        }
    }
    timings.extend(
        linears
            .into_iter()
            .filter(|(name, _)| wanted(name))
            .map(|(name, shape)| linear_layer(name.to_string(), batch, shape)),
    );

    println!("batch {batch}; median wall ms per call and GFLOP/s per wall second; in brackets GFLOP per CPU second (all threads)");
    println!(
        "{:<22} {:>9} {:>16} {:>9} {:>16} {:>9} {:>16}",
        "layer", "fwd ms", "GFLOP/s", "dx ms", "GFLOP/s", "dw ms", "GFLOP/s"
    );
    for t in &timings {
        let rate =
            |(wall, cpu): (f64, f64)| format!("{:.1} [{:.1}]", t.gflop / wall * 1e3, t.gflop / cpu.max(1e-9) * 1e3);
        println!(
            "{:<22} {:>9.2} {:>16} {:>9.2} {:>16} {:>9.2} {:>16}",
            t.name,
            t.fwd.0,
            rate(t.fwd),
            t.dx.0,
            rate(t.dx),
            t.dw.0,
            rate(t.dw)
        );
    }
    if let Some(path) = json_out {
        let layers: Vec<String> = timings
            .iter()
            .map(|t| {
                format!(
                    "{{\"layer\": \"{}\", \"gflop\": {}, \"fwd_ms\": {}, \"dx_ms\": {}, \"dw_ms\": {}}}",
                    t.name, t.gflop, t.fwd.0, t.dx.0, t.dw.0
                )
            })
            .collect();
        std::fs::write(
            path,
            format!("{{\"batch\": {batch}, \"layers\": [{}]}}\n", layers.join(", ")),
        )
        .expect("cannot write the JSON file");
    }
}
