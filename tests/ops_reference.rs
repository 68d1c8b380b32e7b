//! Every op's forward against a naive f64 loop implementation, and every op's backward (input,
//! weight and bias gradients) against central finite differences.

use dfdx::prelude::*;
use palm_cnn::ops::{
    activation, avg_pool2d, conv2d, global_avg_pool2d, linear, max_pool2d, relu, sigmoid, window_output_size,
    Activation, Conv2dGeometry, ConvAlgorithm, LinearGeometry,
};
mod common;

use common::{assert_close, numeric_grad, random_vec};
use rand::{rngs::StdRng, Rng, SeedableRng};

type Shape4 = (usize, usize, usize, usize);

/// Direct convolution: out[b,o,y,x] = bias[o] + Σ_c,i,j x[b,c,y·s+i−p,x·s+j−p] · w[o,c,i,j].
fn naive_conv(
    x: &[f64],
    (b, c, h, w): Shape4,
    wt: &[f64],
    (o, kh, kw): (usize, usize, usize),
    bias: &[f64],
    s: usize,
    p: usize,
) -> (Vec<f64>, usize, usize) {
    let oh = (h + 2 * p - kh) / s + 1;
    let ow = (w + 2 * p - kw) / s + 1;
    let mut out = vec![0.0; b * o * oh * ow];
    for bi in 0..b {
        for oi in 0..o {
            for y in 0..oh {
                for xo in 0..ow {
                    let mut acc = bias[oi];
                    for ci in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let iy = (y * s + i) as isize - p as isize;
                                let ix = (xo * s + j) as isize - p as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                acc += x[((bi * c + ci) * h + iy as usize) * w + ix as usize]
                                    * wt[((oi * c + ci) * kh + i) * kw + j];
                            }
                        }
                    }
                    out[((bi * o + oi) * oh + y) * ow + xo] = acc;
                }
            }
        }
    }
    (out, oh, ow)
}

/// Gradients of `Σ dy · conv(x, w, b)` by the same loops as [`naive_conv`]: every product
/// `x·w` that made an output sends `dy·w` to the input and `dy·x` to the weight.
#[allow(clippy::too_many_arguments)]
fn naive_conv_grads(
    x: &[f64],
    (b, c, h, w): Shape4,
    wt: &[f64],
    (o, kh, kw): (usize, usize, usize),
    dy: &[f64],
    s: usize,
    p: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let oh = (h + 2 * p - kh) / s + 1;
    let ow = (w + 2 * p - kw) / s + 1;
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; wt.len()], vec![0.0; o]);
    for (bi, oi, y, xo) in box_indices(b, o, oh, ow) {
        let g = dy[((bi * o + oi) * oh + y) * ow + xo];
        db[oi] += g;
        for (ci, i, j) in (0..c).flat_map(|ci| (0..kh).flat_map(move |i| (0..kw).map(move |j| (ci, i, j)))) {
            let iy = (y * s + i) as isize - p as isize;
            let ix = (xo * s + j) as isize - p as isize;
            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                continue;
            }
            let xi = ((bi * c + ci) * h + iy as usize) * w + ix as usize;
            let wi = ((oi * c + ci) * kh + i) * kw + j;
            dx[xi] += g * wt[wi];
            dw[wi] += g * x[xi];
        }
    }
    (dx, dw, db)
}

/// Direct pooling; `max` picks the maximum over in-bounds positions, otherwise the sum over
/// in-bounds positions divided by k².
fn naive_pool(x: &[f64], (b, c, h, w): Shape4, k: usize, s: usize, p: usize, max: bool) -> (Vec<f64>, usize, usize) {
    let oh = (h + 2 * p - k) / s + 1;
    let ow = (w + 2 * p - k) / s + 1;
    let mut out = vec![0.0; b * c * oh * ow];
    for plane in 0..b * c {
        for y in 0..oh {
            for xo in 0..ow {
                let mut acc = if max { f64::NEG_INFINITY } else { 0.0 };
                for i in 0..k {
                    for j in 0..k {
                        let iy = (y * s + i) as isize - p as isize;
                        let ix = (xo * s + j) as isize - p as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = x[(plane * h + iy as usize) * w + ix as usize];
                        acc = if max { acc.max(v) } else { acc + v };
                    }
                }
                out[(plane * oh + y) * ow + xo] = if max { acc } else { acc / (k * k) as f64 };
            }
        }
    }
    (out, oh, ow)
}

struct ConvCase {
    shape: Shape4,
    out_channels: usize,
    kernel: (usize, usize),
    stride: usize,
    padding: usize,
}

const CONV_CASES: &[ConvCase] = &[
    // AlexNet's first layer on a reduced image: k11, stride 4, padding 5.
    ConvCase {
        shape: (2, 3, 37, 41),
        out_channels: 4,
        kernel: (11, 11),
        stride: 4,
        padding: 5,
    },
    ConvCase {
        shape: (3, 2, 9, 7),
        out_channels: 5,
        kernel: (3, 3),
        stride: 2,
        padding: 1,
    },
    ConvCase {
        shape: (2, 3, 11, 13),
        out_channels: 4,
        kernel: (5, 5),
        stride: 1,
        padding: 0,
    },
    ConvCase {
        shape: (1, 4, 6, 5),
        out_channels: 3,
        kernel: (3, 2),
        stride: 1,
        padding: 2,
    },
    // Stride 1 with more than 16 filters: the GEMM path (the direct loops take 8 or 16 at most).
    ConvCase {
        shape: (2, 3, 8, 9),
        out_channels: 20,
        kernel: (3, 3),
        stride: 1,
        padding: 1,
    },
    // LeNet-like direct path with a 4×4 kernel and an even input.
    ConvCase {
        shape: (2, 16, 10, 10),
        out_channels: 6,
        kernel: (4, 4),
        stride: 1,
        padding: 0,
    },
    // Direct path, unpadded, wider than one 32-output register segment plus a tail.
    ConvCase {
        shape: (1, 2, 40, 38),
        out_channels: 3,
        kernel: (3, 3),
        stride: 1,
        padding: 0,
    },
    // Padding, 11 filters (for the direct loops: one full block of 8 and a partial one), a row of
    // two 32-column strips and a tail, batch 2.
    ConvCase {
        shape: (2, 3, 9, 70),
        out_channels: 11,
        kernel: (5, 5),
        stride: 1,
        padding: 2,
    },
    // 16 filters (the direct loops' limit with AVX-512), padded, an image narrower than one strip.
    ConvCase {
        shape: (1, 2, 5, 4),
        out_channels: 16,
        kernel: (3, 3),
        stride: 1,
        padding: 1,
    },
    // 1×1 with more filters than the direct loops take, batch 1.
    ConvCase {
        shape: (1, 7, 3, 5),
        out_channels: 18,
        kernel: (1, 1),
        stride: 1,
        padding: 0,
    },
    // The 1×1 direct path.
    ConvCase {
        shape: (2, 5, 4, 3),
        out_channels: 6,
        kernel: (1, 1),
        stride: 1,
        padding: 0,
    },
    ConvCase {
        shape: (2, 5, 7, 7),
        out_channels: 2,
        kernel: (1, 1),
        stride: 2,
        padding: 0,
    },
    // im2col path, 576 output pixels (≥ 512): one sample per GEMM, written in place; batch 3
    // splits into thread groups of 2 and 1.
    ConvCase {
        shape: (3, 2, 24, 24),
        out_channels: 20,
        kernel: (3, 3),
        stride: 1,
        padding: 1,
    },
    // im2col path, 100 output pixels: 6 samples per GEMM, so batch 13 (groups of 7 and 6) has a
    // group with a full chunk and a one-sample chunk.
    ConvCase {
        shape: (13, 2, 10, 10),
        out_channels: 17,
        kernel: (3, 3),
        stride: 1,
        padding: 1,
    },
    // Stride 4 with 24×23 = 552 output pixels: one-sample chunks with strided patches.
    ConvCase {
        shape: (2, 3, 95, 90),
        out_channels: 4,
        kernel: (11, 11),
        stride: 4,
        padding: 5,
    },
    // 32 input channels and 17 filters, 3×3 stride 1: Winograd; the 5×6 output is 3×3 tiles,
    // the last row of them cropped.
    ConvCase {
        shape: (1, 32, 5, 6),
        out_channels: 17,
        kernel: (3, 3),
        stride: 1,
        padding: 1,
    },
    // Stride larger than the kernel, odd sizes.
    ConvCase {
        shape: (3, 1, 13, 9),
        out_channels: 2,
        kernel: (2, 2),
        stride: 3,
        padding: 1,
    },
];

/// conv2d on runtime-shaped tensors, returning the output values.
fn run_conv(dev: &Cpu, x: &[f64], case: &ConvCase, wt: &[f64], bias: &[f64]) -> Vec<f64> {
    let (b, c, h, w) = case.shape;
    let (kh, kw) = case.kernel;
    let oh = window_output_size(h, kh, case.stride, case.padding).unwrap();
    let ow = window_output_size(w, kw, case.stride, case.padding).unwrap();
    let xt = dev.tensor_from_vec(x.to_vec(), (b, c, h, w));
    let wt = dev.tensor_from_vec(wt.to_vec(), (case.out_channels, c, kh, kw));
    let bt = dev.tensor_from_vec(bias.to_vec(), (case.out_channels,));
    conv2d(xt, &wt, Some(&bt), case.stride, case.padding, (oh, ow))
        .unwrap()
        .as_vec()
}

#[test]
fn conv2d_forward_matches_naive_reference() {
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(1);
    for case in CONV_CASES {
        let (b, c, h, w) = case.shape;
        let (kh, kw) = case.kernel;
        let x = random_vec(&mut rng, b * c * h * w);
        let wt = random_vec(&mut rng, case.out_channels * c * kh * kw);
        let bias = random_vec(&mut rng, case.out_channels);
        let (expected, _, _) = naive_conv(
            &x,
            case.shape,
            &wt,
            (case.out_channels, kh, kw),
            &bias,
            case.stride,
            case.padding,
        );
        let actual = run_conv(&dev, &x, case, &wt, &bias);
        assert_close(
            &actual,
            &expected,
            1e-12,
            &format!(
                "conv {:?} k{:?} s{} p{}",
                case.shape, case.kernel, case.stride, case.padding
            ),
        );
    }
}

#[test]
fn conv2d_f32_forward_matches_reference() {
    // The models run in f32: check the f32 kernels too, at f32 accuracy.
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(7);
    let case = &CONV_CASES[0];
    let (b, c, h, w) = case.shape;
    let x = random_vec(&mut rng, b * c * h * w);
    let wt = random_vec(&mut rng, case.out_channels * c * 121);
    let bias = random_vec(&mut rng, case.out_channels);
    let (expected, oh, ow) = naive_conv(&x, case.shape, &wt, (case.out_channels, 11, 11), &bias, 4, 5);
    let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let xt = dev.tensor_from_vec(f(&x), (b, c, h, w));
    let wtt = dev.tensor_from_vec(f(&wt), (case.out_channels, c, 11usize, 11usize));
    let bt = dev.tensor_from_vec(f(&bias), (case.out_channels,));
    let out: Vec<f64> = conv2d(xt, &wtt, Some(&bt), 4, 5, (oh, ow))
        .unwrap()
        .as_vec()
        .into_iter()
        .map(f64::from)
        .collect();
    assert_close(&out, &expected, 1e-4, "f32 AlexNet conv1");
}

#[test]
fn conv2d_backward_matches_finite_differences() {
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(2);
    for case in CONV_CASES {
        let (b, c, h, w) = case.shape;
        let (kh, kw) = case.kernel;
        let oh = window_output_size(h, kh, case.stride, case.padding).unwrap();
        let ow = window_output_size(w, kw, case.stride, case.padding).unwrap();
        let x = random_vec(&mut rng, b * c * h * w);
        let wt = random_vec(&mut rng, case.out_channels * c * kh * kw);
        let bias = random_vec(&mut rng, case.out_channels);
        let coeff = random_vec(&mut rng, b * case.out_channels * oh * ow);

        let xt = dev.tensor_from_vec(x.clone(), (b, c, h, w));
        let wtt = dev.tensor_from_vec(wt.clone(), (case.out_channels, c, kh, kw));
        let bt = dev.tensor_from_vec(bias.clone(), (case.out_channels,));
        let ct = dev.tensor_from_vec(coeff.clone(), (b, case.out_channels, oh, ow));
        let y = conv2d(xt.leaky_trace(), &wtt, Some(&bt), case.stride, case.padding, (oh, ow)).unwrap();
        let grads = (y * ct).sum().backward();

        let what = format!(
            "conv {:?} k{:?} s{} p{}",
            case.shape, case.kernel, case.stride, case.padding
        );
        let dx = numeric_grad(&x, &coeff, &|v| run_conv(&dev, v, case, &wt, &bias));
        assert_close(&grads.get(&xt).as_vec(), &dx, 1e-6, &format!("{what}: input grad"));
        let dw = numeric_grad(&wt, &coeff, &|v| run_conv(&dev, &x, case, v, &bias));
        assert_close(&grads.get(&wtt).as_vec(), &dw, 1e-6, &format!("{what}: weight grad"));
        let db = numeric_grad(&bias, &coeff, &|v| run_conv(&dev, &x, case, &wt, v));
        assert_close(&grads.get(&bt).as_vec(), &db, 1e-6, &format!("{what}: bias grad"));
    }
}

/// 3×3 and 5×5 stride-1 geometries for Winograd F(2×2, 3×3) and F(2×2, 5×5), whose 2×2 output
/// tiles are cropped at odd output sizes: one lone cropped tile (batch 1), odd rows and columns, padding 0 and 2, a
/// one-pixel-wide image, and the layer sizes where `Conv2dGeometry::new` picks Winograd.
const WINOGRAD_CASES: &[ConvCase] = &[
    ConvCase {
        shape: (1, 1, 3, 3),
        out_channels: 1,
        kernel: (3, 3),
        stride: 1,
        padding: 0,
    },
    ConvCase {
        shape: (2, 3, 7, 6),
        out_channels: 5,
        kernel: (3, 3),
        stride: 1,
        padding: 1,
    },
    ConvCase {
        shape: (3, 4, 5, 9),
        out_channels: 2,
        kernel: (3, 3),
        stride: 1,
        padding: 0,
    },
    ConvCase {
        shape: (2, 5, 6, 6),
        out_channels: 3,
        kernel: (3, 3),
        stride: 1,
        padding: 2,
    },
    ConvCase {
        shape: (1, 2, 4, 1),
        out_channels: 3,
        kernel: (3, 3),
        stride: 1,
        padding: 1,
    },
    ConvCase {
        shape: (3, 32, 13, 14),
        out_channels: 20,
        kernel: (3, 3),
        stride: 1,
        padding: 1,
    },
    // F(2×2, 5×5): one lone tile (batch 1), odd output sizes that crop the last tiles, padding 0,
    // 2 and 4, and a deep layer like AlexNet conv2 (pad 2, even output) with a partial tile row.
    ConvCase {
        shape: (1, 1, 6, 6),
        out_channels: 1,
        kernel: (5, 5),
        stride: 1,
        padding: 0,
    },
    ConvCase {
        shape: (2, 3, 9, 8),
        out_channels: 4,
        kernel: (5, 5),
        stride: 1,
        padding: 0,
    },
    ConvCase {
        shape: (3, 2, 7, 5),
        out_channels: 3,
        kernel: (5, 5),
        stride: 1,
        padding: 2,
    },
    ConvCase {
        shape: (1, 2, 3, 2),
        out_channels: 2,
        kernel: (5, 5),
        stride: 1,
        padding: 4,
    },
    ConvCase {
        shape: (2, 64, 10, 9),
        out_channels: 7,
        kernel: (5, 5),
        stride: 1,
        padding: 2,
    },
];

/// Every algorithm that can compute a case, forward and all three gradients, against the naive
/// loops in f64: the paths `Conv2dGeometry::new` would not pick there (the direct loops with
/// many filters, im2col for 1×1 and 3×3 layers, Winograd on small layers) are checked on the same
/// inputs as those it picks.
#[test]
fn every_conv_algorithm_matches_naive_reference() {
    let mut rng = StdRng::seed_from_u64(5);
    let all = [
        ConvAlgorithm::Direct,
        ConvAlgorithm::Pointwise,
        ConvAlgorithm::Im2col,
        ConvAlgorithm::Winograd,
    ];
    let mut runs = [0; 4];
    for case in CONV_CASES.iter().chain(WINOGRAD_CASES) {
        let (b, c, h, w) = case.shape;
        let (kh, kw) = case.kernel;
        let o = case.out_channels;
        let x = random_vec(&mut rng, b * c * h * w);
        let wt = random_vec(&mut rng, o * c * kh * kw);
        let bias = random_vec(&mut rng, o);
        let (expected, oh, ow) = naive_conv(&x, case.shape, &wt, (o, kh, kw), &bias, case.stride, case.padding);
        let dy = random_vec(&mut rng, b * o * oh * ow);
        let (dx, dw, db) = naive_conv_grads(&x, case.shape, &wt, (o, kh, kw), &dy, case.stride, case.padding);
        let g = Conv2dGeometry::new(b, c, (h, w), o, (kh, kw), case.stride, case.padding).unwrap();
        for (n, algorithm) in all.into_iter().enumerate() {
            let Some(g) = g.with_algorithm(algorithm) else {
                continue;
            };
            runs[n] += 1;
            let what = format!(
                "{algorithm:?} conv {:?} o{o} k{:?} s{} p{}",
                case.shape, case.kernel, case.stride, case.padding
            );
            assert_close(
                &g.forward(&x, &wt, Some(&bias)),
                &expected,
                1e-12,
                &format!("{what}: forward"),
            );
            let (ax, aw, ab) = g.backward(&x, &wt, &dy);
            assert_close(&ax, &dx, 1e-12, &format!("{what}: input grad"));
            assert_close(&aw, &dw, 1e-12, &format!("{what}: weight grad"));
            assert_close(&ab, &db, 1e-12, &format!("{what}: bias grad"));
            assert_close(
                &g.backward_input(&wt, &dy),
                &dx,
                1e-12,
                &format!("{what}: input grad alone"),
            );
            assert_close(
                &g.backward_params(&x, &dy).0,
                &dw,
                1e-12,
                &format!("{what}: weight grad alone"),
            );
        }
    }
    // Each algorithm ran on several cases (the lists above decide which).
    assert!(runs.iter().all(|&r| r >= 2), "cases per algorithm: {runs:?}");
}

/// Which algorithm `Conv2dGeometry::new` picks for the layers of the models.
#[test]
fn conv_algorithm_choice_per_layer() {
    let pick = |c, hw, o, k, s, p| {
        Conv2dGeometry::new(10, c, (hw, hw), o, (k, k), s, p)
            .unwrap()
            .algorithm()
    };
    // LeNet-PALM: 6 filters on 3 channels, then 16 filters: the direct loops where the CPU has
    // their AVX-512 or AVX2 kernels; without, only for the first layer's forward pass and weight
    // gradient. Its conv3 (120 filters): im2col.
    let vectorised = std::is_x86_feature_detected!("avx512f")
        || (std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"));
    let lenet_conv1 = Conv2dGeometry::new(10, 3, (224, 224), 6, (5, 5), 1, 0).unwrap();
    assert_eq!(lenet_conv1.algorithm(), ConvAlgorithm::Direct);
    assert_eq!(pick(16, 53, 120, 4, 1, 0), ConvAlgorithm::Im2col);
    let (conv1_dx, conv2) = if vectorised {
        (ConvAlgorithm::Direct, ConvAlgorithm::Direct)
    } else {
        (ConvAlgorithm::Im2col, ConvAlgorithm::Im2col)
    };
    assert_eq!(lenet_conv1.input_grad_algorithm(), conv1_dx);
    assert_eq!(pick(6, 110, 16, 5, 1, 0), conv2);
    // AlexNet conv1 (stride 4), conv2 (5×5), conv3–conv5 (3×3 on 256 and 384 channels).
    assert_eq!(pick(3, 224, 96, 11, 4, 5), ConvAlgorithm::Im2col);
    assert_eq!(pick(96, 28, 256, 5, 1, 2), ConvAlgorithm::Winograd);
    // GoogLeNet's widest 5×5 branch (48 channels) keeps im2col.
    assert_eq!(pick(48, 7, 128, 5, 1, 2), ConvAlgorithm::Im2col);
    assert_eq!(pick(256, 14, 384, 3, 1, 1), ConvAlgorithm::Winograd);
    assert_eq!(pick(384, 14, 256, 3, 1, 1), ConvAlgorithm::Winograd);
    // VGG-16's first layer has 3 input channels: too few for Winograd's transforms to pay. Its
    // 224×224 to 56×56 layers would need transform buffers over 16 M elements (64 MB) for the
    // batch: im2col. From 28×28 on, and ResNet-50's 56×56 64-channel layers: Winograd.
    assert_eq!(pick(3, 224, 64, 3, 1, 1), ConvAlgorithm::Im2col);
    assert_eq!(pick(64, 224, 64, 3, 1, 1), ConvAlgorithm::Im2col);
    assert_eq!(pick(256, 56, 256, 3, 1, 1), ConvAlgorithm::Im2col);
    assert_eq!(pick(512, 28, 512, 3, 1, 1), ConvAlgorithm::Winograd);
    assert_eq!(pick(512, 14, 512, 3, 1, 1), ConvAlgorithm::Winograd);
    assert_eq!(pick(64, 56, 64, 3, 1, 1), ConvAlgorithm::Winograd);
    // ResNet-50's 1×1 layers, and a strided 3×3.
    assert_eq!(pick(256, 56, 64, 1, 1, 0), ConvAlgorithm::Pointwise);
    assert_eq!(pick(128, 56, 128, 3, 2, 1), ConvAlgorithm::Im2col);
}

const POOL_CASES: &[(Shape4, usize, usize, usize)] = &[
    ((2, 3, 8, 8), 2, 2, 0),
    ((1, 2, 7, 9), 3, 2, 1),
    ((2, 1, 5, 5), 3, 1, 1),
    ((1, 2, 9, 6), 2, 3, 0),
    // 2×2 windows at stride 2, odd sizes (the last row and column are dropped).
    ((2, 3, 7, 9), 2, 2, 0),
    ((1, 1, 3, 2), 2, 2, 0),
];

fn run_pool(dev: &Cpu, x: &[f64], shape: Shape4, k: usize, s: usize, p: usize, max: bool) -> Vec<f64> {
    let oh = window_output_size(shape.2, k, s, p).unwrap();
    let ow = window_output_size(shape.3, k, s, p).unwrap();
    let xt = dev.tensor_from_vec(x.to_vec(), shape);
    if max {
        max_pool2d(xt, k, s, p, (oh, ow)).unwrap().as_vec()
    } else {
        avg_pool2d(xt, k, s, p, (oh, ow)).unwrap().as_vec()
    }
}

#[test]
fn pools_forward_match_naive_reference() {
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(3);
    for &(shape, k, s, p) in POOL_CASES {
        let x = random_vec(&mut rng, shape.0 * shape.1 * shape.2 * shape.3);
        for max in [true, false] {
            let (expected, _, _) = naive_pool(&x, shape, k, s, p, max);
            assert_close(
                &run_pool(&dev, &x, shape, k, s, p, max),
                &expected,
                1e-12,
                &format!("pool max={max} {shape:?} k{k} s{s} p{p}"),
            );
        }
    }
}

#[test]
fn pools_backward_match_finite_differences() {
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(4);
    for &(shape, k, s, p) in POOL_CASES {
        // Distinct values, so that no max-pool window has a tie that a finite step could flip.
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let mut x: Vec<f64> = (0..n).map(|i| i as f64 * 0.01).collect();
        for i in (1..n).rev() {
            x.swap(i, rng.gen_range(0..=i));
        }
        let oh = window_output_size(shape.2, k, s, p).unwrap();
        let ow = window_output_size(shape.3, k, s, p).unwrap();
        let coeff = random_vec(&mut rng, shape.0 * shape.1 * oh * ow);
        for max in [true, false] {
            let xt = dev.tensor_from_vec(x.clone(), shape);
            let ct = dev.tensor_from_vec(coeff.clone(), (shape.0, shape.1, oh, ow));
            let y = if max {
                max_pool2d(xt.leaky_trace(), k, s, p, (oh, ow))
            } else {
                avg_pool2d(xt.leaky_trace(), k, s, p, (oh, ow))
            }
            .unwrap();
            let grads = (y * ct).sum().backward();
            let expected = numeric_grad(&x, &coeff, &|v| run_pool(&dev, v, shape, k, s, p, max));
            assert_close(
                &grads.get(&xt).as_vec(),
                &expected,
                1e-6,
                &format!("pool grad max={max} {shape:?} k{k} s{s} p{p}"),
            );
        }
    }
}

#[test]
fn global_avg_pool_forward_and_backward() {
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(5);
    let shape = (2, 3, 4, 5);
    let x = random_vec(&mut rng, 120);
    let expected: Vec<f64> = x.chunks(20).map(|p| p.iter().sum::<f64>() / 20.0).collect();
    let xt = dev.tensor_from_vec(x.clone(), shape);
    let coeff = random_vec(&mut rng, 6);
    let y = global_avg_pool2d(xt.leaky_trace()).unwrap();
    assert_close(&y.as_vec(), &expected, 1e-12, "global avg pool");
    let grads = (y * dev.tensor_from_vec(coeff.clone(), (2usize, 3usize)))
        .sum()
        .backward();
    let numeric = numeric_grad(&x, &coeff, &|v| {
        global_avg_pool2d(dev.tensor_from_vec(v.to_vec(), shape))
            .unwrap()
            .as_vec()
    });
    assert_close(&grads.get(&xt).as_vec(), &numeric, 1e-6, "global avg pool grad");
}

#[test]
fn gradients_accumulate_across_uses() {
    // A weight used twice must receive the sum of both gradients, as dfdx's own ops do.
    let dev = Cpu::default();
    let x = dev.tensor_from_vec(vec![1.0f64, 2.0, 3.0, 4.0], (1usize, 1usize, 2usize, 2usize));
    let w = dev.tensor_from_vec(vec![0.5f64], (1usize, 1usize, 1usize, 1usize));
    let y1 = conv2d(x.leaky_trace(), &w, None, 1, 0, (2usize, 2usize)).unwrap();
    let (y1, tape) = y1.split_tape();
    let y2 = conv2d(x.clone().put_tape(tape), &w, None, 1, 0, (2usize, 2usize)).unwrap();
    let grads = (y2 + y1).sum().backward();
    // d/dw of Σ(w·x) + Σ(w·x) is 2·Σx = 20, and the input gets 2·w = 1 per element.
    assert_close(&grads.get(&w).as_vec(), &[20.0], 1e-12, "weight used twice");
    assert_close(&grads.get(&x).as_vec(), &[1.0; 4], 1e-12, "input used twice");
}

/// y[b,o] = bias[o] + Σ_i x[b,i] · w[o,i].
fn naive_linear(x: &[f64], w: &[f64], bias: &[f64], (batch, inputs, outputs): (usize, usize, usize)) -> Vec<f64> {
    let mut y = vec![0.0; batch * outputs];
    for b in 0..batch {
        for o in 0..outputs {
            y[b * outputs + o] = bias[o] + (0..inputs).map(|i| x[b * inputs + i] * w[o * inputs + i]).sum::<f64>();
        }
    }
    y
}

/// (batch, inputs, outputs): batch 1, odd sizes, more outputs than inputs and the reverse, one
/// output (the models' last layer).
/// Batches up to 16 take the blocked small-batch loops, larger ones the GEMM (20 here); 4,100 inputs
/// span two of the forward pass's 4,096-column blocks.
const LINEAR_CASES: &[(usize, usize, usize)] = &[
    (1, 7, 3),
    (3, 5, 11),
    (10, 37, 1),
    (4, 64, 17),
    (20, 9, 5),
    (2, 4100, 2),
];

fn run_linear(
    dev: &Cpu,
    x: &[f64],
    w: &[f64],
    bias: &[f64],
    (batch, inputs, outputs): (usize, usize, usize),
) -> Vec<f64> {
    let xt = dev.tensor_from_vec(x.to_vec(), (batch, inputs));
    let wt = dev.tensor_from_vec(w.to_vec(), (outputs, inputs));
    let bt = dev.tensor_from_vec(bias.to_vec(), (outputs,));
    linear(xt, &wt, Some(&bt)).unwrap().as_vec()
}

#[test]
fn linear_forward_matches_naive_reference() {
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(11);
    for &(batch, inputs, outputs) in LINEAR_CASES {
        let x = random_vec(&mut rng, batch * inputs);
        let w = random_vec(&mut rng, outputs * inputs);
        let bias = random_vec(&mut rng, outputs);
        let expected = naive_linear(&x, &w, &bias, (batch, inputs, outputs));
        let actual = run_linear(&dev, &x, &w, &bias, (batch, inputs, outputs));
        assert_close(
            &actual,
            &expected,
            1e-12,
            &format!("linear {batch}x{inputs}->{outputs}"),
        );
    }
}

#[test]
fn linear_f32_at_alexnet_fc2_size_matches_reference() {
    // The models' layers run in f32 at sizes where the GEMM blocks and threads its work.
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(12);
    let (batch, inputs, outputs) = (10, 4096, 300);
    let x = random_vec(&mut rng, batch * inputs);
    let w: Vec<f64> = random_vec(&mut rng, outputs * inputs)
        .iter()
        .map(|v| v * 0.02)
        .collect();
    let bias = random_vec(&mut rng, outputs);
    let expected = naive_linear(&x, &w, &bias, (batch, inputs, outputs));
    let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let y = linear(
        dev.tensor_from_vec(f(&x), (batch, inputs)),
        &dev.tensor_from_vec(f(&w), (outputs, inputs)),
        Some(&dev.tensor_from_vec(f(&bias), (outputs,))),
    )
    .unwrap();
    let actual: Vec<f64> = y.as_vec().into_iter().map(f64::from).collect();
    assert_close(&actual, &expected, 1e-4, "f32 linear 10x4096->300");
}

/// The f32 small-batch forward pass (AVX2 where the CPU has it): batches of 1 to 16, so one or two
/// register groups of samples; input counts below one vector, with a partial vector, and over
/// several column blocks and both threads' ranges; one output and odd counts. It adds into `y`.
#[test]
fn linear_f32_small_batch_forward_matches_reference() {
    let mut rng = StdRng::seed_from_u64(14);
    for (batch, inputs, outputs) in [
        (1, 7, 3),
        (3, 1001, 5),
        (10, 4100, 17),
        (13, 600, 4),
        (16, 1030, 2),
        (10, 9, 1),
    ] {
        let x = random_vec(&mut rng, batch * inputs);
        let w = random_vec(&mut rng, outputs * inputs);
        let y0 = random_vec(&mut rng, batch * outputs);
        let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        let (xf, wf) = (f(&x), f(&w));
        let mut y = f(&y0);
        LinearGeometry { batch, inputs, outputs }.forward_add(&mut y, &xf, &wf);
        for b in 0..batch {
            for o in 0..outputs {
                let terms = (0..inputs).map(|i| f64::from(xf[b * inputs + i]) * f64::from(wf[o * inputs + i]));
                let expected = f64::from(f(&y0)[b * outputs + o]) + terms.clone().sum::<f64>();
                // f32 sums err by at most a few ulp of the terms' magnitudes in total.
                let bound = 1e-5 * (1.0 + terms.map(f64::abs).sum::<f64>());
                let got = f64::from(y[b * outputs + o]);
                assert!(
                    (got - expected).abs() <= bound,
                    "{batch}x{inputs}->{outputs}: y[{b}, {o}] = {got}, expected {expected}"
                );
            }
        }
    }
}

#[test]
fn linear_backward_matches_finite_differences() {
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(13);
    for &(batch, inputs, outputs) in LINEAR_CASES {
        let dims = (batch, inputs, outputs);
        let x = random_vec(&mut rng, batch * inputs);
        let w = random_vec(&mut rng, outputs * inputs);
        let bias = random_vec(&mut rng, outputs);
        let coeff = random_vec(&mut rng, batch * outputs);
        let xt = dev.tensor_from_vec(x.clone(), (batch, inputs));
        let wt = dev.tensor_from_vec(w.clone(), (outputs, inputs));
        let bt = dev.tensor_from_vec(bias.clone(), (outputs,));
        let ct = dev.tensor_from_vec(coeff.clone(), (batch, outputs));
        let grads = (linear(xt.leaky_trace(), &wt, Some(&bt)).unwrap() * ct)
            .sum()
            .backward();
        let what = format!("linear {batch}x{inputs}->{outputs}");
        let dx = numeric_grad(&x, &coeff, &|v| run_linear(&dev, v, &w, &bias, dims));
        assert_close(&grads.get(&xt).as_vec(), &dx, 1e-6, &format!("{what}: input grad"));
        let dw = numeric_grad(&w, &coeff, &|v| run_linear(&dev, &x, v, &bias, dims));
        assert_close(&grads.get(&wt).as_vec(), &dw, 1e-6, &format!("{what}: weight grad"));
        let db = numeric_grad(&bias, &coeff, &|v| run_linear(&dev, &x, &w, v, dims));
        assert_close(&grads.get(&bt).as_vec(), &db, 1e-6, &format!("{what}: bias grad"));
    }
}

#[test]
fn linear_gradients_accumulate_across_uses() {
    // The backward pass adds into dfdx's gradient buffers directly: a weight and an input used
    // twice must get both contributions, not the last one.
    let dev = Cpu::default();
    let x = dev.tensor_from_vec(vec![1.0f64, 2.0, 3.0], (1usize, 3usize));
    let w = dev.tensor_from_vec(vec![0.5f64, -1.0, 2.0], (1usize, 3usize));
    let y1 = linear(x.leaky_trace(), &w, None).unwrap();
    let (y1, tape) = y1.split_tape();
    let y2 = linear(x.clone().put_tape(tape), &w, None).unwrap();
    let grads = (y2 + y1).sum().backward();
    assert_close(&grads.get(&w).as_vec(), &[2.0, 4.0, 6.0], 1e-12, "weight used twice");
    assert_close(&grads.get(&x).as_vec(), &[1.0, -2.0, 4.0], 1e-12, "input used twice");
}

/// Inputs that are views with other strides (a permuted image, a transposed weight, a broadcast
/// bias) must be read in logical order: the ops copy a contiguous tensor's buffer as it lies in
/// memory, so a view that skipped the reordering would scramble every value.
#[test]
fn strided_views_are_read_in_logical_order() {
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(23);
    // linear: x stored as [I, B] and weight as [I, O], both transposed into place.
    let (batch, inputs, outputs) = (3, 5, 4);
    let x_ib = random_vec(&mut rng, inputs * batch);
    let w_io = random_vec(&mut rng, inputs * outputs);
    let x_bi: Vec<f64> = (0..batch * inputs)
        .map(|n| x_ib[(n % inputs) * batch + n / inputs])
        .collect();
    let w_oi: Vec<f64> = (0..outputs * inputs)
        .map(|n| w_io[(n % inputs) * outputs + n / inputs])
        .collect();
    let bias = random_vec(&mut rng, outputs);
    let expected = naive_linear(&x_bi, &w_oi, &bias, (batch, inputs, outputs));
    let xt = dev
        .tensor_from_vec(x_ib, (inputs, batch))
        .permute::<(usize, usize), Axes2<1, 0>>();
    let wt = dev
        .tensor_from_vec(w_io, (inputs, outputs))
        .permute::<(usize, usize), Axes2<1, 0>>();
    let bt = dev.tensor_from_vec(bias, (outputs,));
    let actual = linear(xt, &wt, Some(&bt)).unwrap().as_vec();
    assert_close(&actual, &expected, 1e-12, "linear on transposed input and weight");

    let (b, c, h, w, o, k) = (2, 3, 7, 6, 4, 3);
    // x as [B, H, W, C] in memory, permuted to [B, C, H, W]; the reference gets it reordered.
    let x_bhwc = random_vec(&mut rng, b * h * w * c);
    let mut x = vec![0.0; x_bhwc.len()];
    for (bi, ci, yi, xi) in box_indices(b, c, h, w) {
        x[((bi * c + ci) * h + yi) * w + xi] = x_bhwc[((bi * h + yi) * w + xi) * c + ci];
    }
    // weight as [O, Kh, Kw, C] in memory, permuted to [O, C, Kh, Kw].
    let w_okkc = random_vec(&mut rng, o * k * k * c);
    let mut wt = vec![0.0; w_okkc.len()];
    for (oi, ci, i, j) in box_indices(o, c, k, k) {
        wt[((oi * c + ci) * k + i) * k + j] = w_okkc[((oi * k + i) * k + j) * c + ci];
    }
    let bias = vec![0.25; o];
    let (expected, oh, ow) = naive_conv(&x, (b, c, h, w), &wt, (o, k, k), &bias, 2, 1);

    let xt = dev
        .tensor_from_vec(x_bhwc, (b, h, w, c))
        .permute::<(usize, usize, usize, usize), Axes4<0, 3, 1, 2>>();
    let wtt = dev
        .tensor_from_vec(w_okkc, (o, k, k, c))
        .permute::<(usize, usize, usize, usize), Axes4<0, 3, 1, 2>>();
    let bt: Tensor<(usize,), f64, Cpu> = dev.tensor(0.25).broadcast_like(&(o,));
    let actual = conv2d(xt.clone(), &wtt, Some(&bt), 2, 1, (oh, ow)).unwrap().as_vec();
    assert_close(
        &actual,
        &expected,
        1e-12,
        "conv2d on permuted input and weight, broadcast bias",
    );

    let (pooled, _, _) = naive_pool(&x, (b, c, h, w), 2, 2, 0, true);
    let actual = max_pool2d(xt, 2, 2, 0, (h / 2, w / 2)).unwrap().as_vec();
    assert_close(&actual, &pooled, 0.0, "max_pool2d on a permuted input");
}

/// Every index of a 4-D box, row-major.
fn box_indices(a: usize, b: usize, c: usize, d: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    (0..a).flat_map(move |i| (0..b).flat_map(move |j| (0..c).flat_map(move |k| (0..d).map(move |l| (i, j, k, l)))))
}

/// The direct loops have f32 kernels of their own (AVX-512, picked at run time where the CPU has
/// it): forward, input gradient and weight gradient in f32 against the f64 naive loops, with the
/// direct algorithm forced in every pass. Cases: LeNet's two layers (reduced images), 11 filters
/// (a partial block), padding, a 7-wide kernel (two passes of the weight gradient's 5 taps), rows
/// narrower than one register and batch 1.
#[test]
fn direct_conv_f32_matches_f64_forward_and_gradients() {
    let mut rng = StdRng::seed_from_u64(31);
    // (shape, out channels, kernel, padding)
    let cases: &[(Shape4, usize, usize, usize)] = &[
        ((2, 3, 30, 37), 6, 5, 0),
        ((3, 6, 19, 45), 16, 5, 0),
        ((2, 3, 9, 70), 11, 5, 2),
        ((1, 2, 12, 11), 5, 7, 3),
        ((1, 4, 6, 5), 16, 3, 1),
    ];
    for &((b, c, h, w), o, k, p) in cases {
        let x = random_vec(&mut rng, b * c * h * w);
        let wt = random_vec(&mut rng, o * c * k * k);
        let bias = random_vec(&mut rng, o);
        let (y64, oh, ow) = naive_conv(&x, (b, c, h, w), &wt, (o, k, k), &bias, 1, p);
        let dy = random_vec(&mut rng, b * o * oh * ow);
        let (dx64, dw64, _) = naive_conv_grads(&x, (b, c, h, w), &wt, (o, k, k), &dy, 1, p);
        let what = format!("direct conv {:?} o{o} k{k} p{p}", (b, c, h, w));

        let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        let back = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
        let g = Conv2dGeometry::new(b, c, (h, w), o, (k, k), 1, p)
            .unwrap()
            .with_algorithm(ConvAlgorithm::Direct)
            .unwrap();
        let (x32, w32, dy32) = (f(&x), f(&wt), f(&dy));
        assert_close(
            &back(g.forward(&x32, &w32, Some(&f(&bias)))),
            &y64,
            1e-4,
            &format!("{what}: f32 forward"),
        );
        let (dx, dw, _) = g.backward(&x32, &w32, &dy32);
        assert_close(&back(dx), &dx64, 1e-4, &format!("{what}: f32 input grad"));
        // Weight gradients sum b·Ho·Wo products (up to ~2,000 here): f32 keeps about 1e-4 of it.
        assert_close(&back(dw), &dw64, 2e-4, &format!("{what}: f32 weight grad"));
    }
}

/// Lengths around the activations' 16,384-element parallel pieces, and a tiny one.
const ACTIVATION_LENGTHS: &[usize] = &[1, 7, 16_383, 16_384, 16_385, 3 * 16_384 + 11];

#[test]
fn activations_match_formulas_and_gradients() {
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(21);
    for &n in ACTIVATION_LENGTHS {
        // Values on both sides of 0, some exactly 0, where ReLU's derivative is taken as 0.
        let x: Vec<f64> = (0..n)
            .map(|i| if i % 13 == 0 { 0.0 } else { rng.gen_range(-6.0..6.0) })
            .collect();
        let coeff = random_vec(&mut rng, n);
        for f in [Activation::Relu, Activation::Sigmoid] {
            let value = |v: f64| match f {
                Activation::Relu => v.max(0.0),
                Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            };
            // dy/dx by hand: 1 above 0 (0 at and below) for ReLU; e^(−x)/(1 + e^(−x))² for the sigmoid.
            let slope = |v: f64| match f {
                Activation::Relu => f64::from(u8::from(v > 0.0)),
                Activation::Sigmoid => (-v).exp() / (1.0 + (-v).exp()).powi(2),
            };
            let xt = dev.tensor_from_vec(x.clone(), (n,));
            let y = activation(xt.leaky_trace(), f).unwrap();
            let expected: Vec<f64> = x.iter().map(|&v| value(v)).collect();
            assert_close(&y.as_vec(), &expected, 1e-15, &format!("{f:?} forward, n = {n}"));
            let grads = (y * dev.tensor_from_vec(coeff.clone(), (n,))).sum().backward();
            let expected: Vec<f64> = x.iter().zip(&coeff).map(|(&v, &c)| c * slope(v)).collect();
            assert_close(
                &grads.get(&xt).as_vec(),
                &expected,
                1e-12,
                &format!("{f:?} gradient, n = {n}"),
            );
        }
    }
}

#[test]
fn sigmoid_gradient_matches_finite_differences_in_f32_model_shape() {
    // A 4-d f32 batch as the models feed it, against central differences in f64.
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(22);
    let shape = (2usize, 3usize, 5usize, 7usize);
    let x = random_vec(&mut rng, 210);
    let coeff = random_vec(&mut rng, 210);
    let x32: Vec<f32> = x.iter().map(|&v| v as f32 * 3.0).collect();
    let xt = dev.tensor_from_vec(x32.clone(), shape);
    let y = sigmoid(xt.leaky_trace()).unwrap();
    let c32: Vec<f32> = coeff.iter().map(|&c| c as f32).collect();
    let grads = (y * dev.tensor_from_vec(c32, shape)).sum().backward();
    let got: Vec<f64> = grads.get(&xt).as_vec().iter().map(|&g| f64::from(g)).collect();
    let x64: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
    let numeric = numeric_grad(&x64, &coeff, &|v| v.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect());
    assert_close(&got, &numeric, 1e-6, "sigmoid f32 gradient");
}

/// The f32 sigmoid (vectorised on AVX2 machines) against the formula in f64, across the range
/// where it is neither 0 nor 1 in f32 and beyond, at lengths that leave a partial vector, on
/// both paths (in place without a tape, into a new buffer with one): within 2 ulp of the exact
/// value (1 ulp from e^(−x)'s polynomial, about 1 from the division), or below 1e-37 where the
/// exact value is itself that small.
#[test]
fn sigmoid_f32_within_2_ulp_of_f64() {
    let dev = Cpu::default();
    let n = 200_003;
    let mut x: Vec<f32> = (0..n).map(|i| -100.0 + 200.0 * i as f32 / (n - 1) as f32).collect();
    x.extend([
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        87.3,
        -87.3,
        88.7,
        -88.7,
        103.0,
        -103.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    for len in [x.len(), 13, 7, 1] {
        let x = &x[x.len() - len..];
        let exact: Vec<f64> = x.iter().map(|&v| 1.0 / (1.0 + (-f64::from(v)).exp())).collect();
        let in_place = sigmoid(dev.tensor_from_vec(x.to_vec(), (len,))).unwrap().as_vec();
        let traced = sigmoid(dev.tensor_from_vec(x.to_vec(), (len,)).leaky_trace())
            .unwrap()
            .as_vec();
        for (path, got) in [("in place", in_place), ("traced", traced)] {
            let mut worst_ulps = 0.0f64;
            for ((&v, &want), &got) in x.iter().zip(&exact).zip(&got) {
                let err = (f64::from(got) - want).abs();
                let ulp = f64::from(f32::EPSILON) * want.abs();
                assert!(
                    err <= 2.0 * ulp || (want < 1e-37 && got < 1e-37),
                    "{path}, length {len}: sigmoid({v}) = {got}, exact {want} ({:.2} ulp)",
                    err / ulp
                );
                worst_ulps = worst_ulps.max(err / ulp.max(1e-37));
            }
            eprintln!("sigmoid f32 {path}, length {len}: worst {worst_ulps:.2} ulp");
        }
    }
    let nan = sigmoid(dev.tensor([f32::NAN, 1.0])).unwrap().as_vec();
    assert!(nan[0].is_nan(), "NaN in, NaN out, got {}", nan[0]);
}

#[test]
fn relu_keeps_nan_and_gradients_accumulate() {
    let dev = Cpu::default();
    let y = relu(dev.tensor([f32::NAN, -1.0, 2.0])).unwrap().as_vec();
    assert!(y[0].is_nan(), "NaN in, NaN out (as in PyTorch), got {}", y[0]);
    assert_eq!(&y[1..], &[0.0, 2.0]);
    // x used by two activations: its gradient is the sum of both.
    let x = dev.tensor([-1.0f64, 0.5, 2.0]);
    let a = relu(x.leaky_trace()).unwrap();
    let (a, tape) = a.split_tape();
    let s = sigmoid(x.clone().put_tape(tape)).unwrap();
    let grads = (s + a).sum().backward();
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let expected: Vec<f64> = [-1.0f64, 0.5, 2.0]
        .iter()
        .map(|&v| sig(v) * (1.0 - sig(v)) + f64::from(u8::from(v > 0.0)))
        .collect();
    assert_close(&grads.get(&x).as_vec(), &expected, 1e-12, "two uses of x");
}

#[test]
fn max_pool_2x2_ties_and_nan() {
    // Window 1 holds 3 twice: the first in scan order (row by row) wins, so its gradient goes to
    // index 1. Window 2 holds a NaN, which wins and propagates, as in PyTorch.
    let dev = Cpu::default();
    let x = dev.tensor_from_vec(
        vec![1.0f32, 3.0, 3.0, 0.0, 3.0, 2.0, f32::NAN, 5.0],
        (1usize, 1usize, 2usize, 4usize),
    );
    let y = max_pool2d(x.leaky_trace(), 2, 2, 0, (1usize, 2usize)).unwrap();
    let values = y.as_vec();
    assert_eq!(values[0], 3.0);
    assert!(values[1].is_nan(), "NaN window gave {}", values[1]);
    let grads = y.sum().backward();
    assert_eq!(grads.get(&x).as_vec(), vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
}

/// 2×2 max pooling in f32 (vectorised on AVX2 machines, 8 outputs at a time) against a naive
/// loop with the documented rule, on rows wide enough for full vectors plus a partial one: values
/// from {0, 1, 2, 3}, so most windows hold ties, and NaNs, sometimes two in one window (the last
/// in scan order wins the gradient, as each later NaN replaces the one before). Outputs must agree
/// bit for bit and every gradient must land on the same input.
#[test]
fn max_pool_2x2_f32_matches_scalar_rule() {
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(41);
    for shape in [(2usize, 3usize, 7usize, 37usize), (1, 2, 6, 16), (1, 1, 4, 61)] {
        let (b, c, h, w) = shape;
        let x: Vec<f32> = (0..b * c * h * w)
            .map(|_| {
                if rng.gen_range(0..40) == 0 {
                    f32::NAN
                } else {
                    f32::from(rng.gen_range(0u8..4))
                }
            })
            .collect();
        let (oh, ow) = (h / 2, w / 2);
        let (mut want, mut want_grad) = (Vec::new(), vec![0.0f32; x.len()]);
        for plane in 0..b * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let at = |dy: usize, dx: usize| plane * h * w + (2 * oy + dy) * w + 2 * ox + dx;
                    let mut best_at = at(0, 0);
                    for pos in [at(0, 1), at(1, 0), at(1, 1)] {
                        if x[pos] > x[best_at] || x[pos].is_nan() {
                            best_at = pos;
                        }
                    }
                    want.push(x[best_at]);
                    want_grad[best_at] += 1.0;
                }
            }
        }
        let xt = dev.tensor_from_vec(x.clone(), shape);
        let y = max_pool2d(xt.leaky_trace(), 2, 2, 0, (oh, ow)).unwrap();
        let got = y.as_vec();
        let same = |a: f32, b: f32| a == b || (a.is_nan() && b.is_nan());
        for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
            assert!(same(g, e), "{shape:?}: output {i} is {g}, expected {e}");
        }
        let grads = y.sum().backward();
        let grad = grads.get(&xt).as_vec();
        let wrong = grad.iter().zip(&want_grad).position(|(g, w)| g != w);
        assert_eq!(wrong, None, "{shape:?}: first input whose gradient differs");
    }
}

/// Largest error of `actual` (f32) against `exact` (f64), in units of f32's ε times `scale`
/// (each output's Σ|terms|, the size of the sum before cancellation).
fn error_in_eps(actual: &[f32], exact: &[f64], scale: &[f64]) -> f64 {
    actual
        .iter()
        .zip(exact)
        .zip(scale)
        .map(|((&a, &e), &s)| (f64::from(a) - e).abs() / (f64::from(f32::EPSILON) * s.max(1e-30)))
        .fold(0.0, f64::max)
}

/// Winograd's error in f32 against the f64 naive loops, beside im2col's on the same data, for
/// `[forward, input grad, weight grad]`: the largest error of any output as a multiple of
/// ε·Σ|terms| for that output (ε = 2⁻²³; rounding while summing n random terms in f32 lands near
/// 1 on this scale whatever the algorithm), and the error's root mean square relative to the
/// exact values'.
fn winograd_and_im2col_errors(
    (b, c, h, w, o): (usize, usize, usize, usize, usize),
    k: usize,
) -> [([f64; 3], [f64; 3]); 2] {
    let mut rng = StdRng::seed_from_u64(17);
    let p = k / 2;
    // Inputs representable in f32, so that the f64 reference sees exactly what the f32 kernels do.
    let f32_valued = |v: Vec<f64>| v.into_iter().map(|a| f64::from(a as f32)).collect::<Vec<f64>>();
    let x = f32_valued(random_vec(&mut rng, b * c * h * w));
    let wt = f32_valued(random_vec(&mut rng, o * c * k * k));
    let bias = vec![0.0; o];
    let (y, _, _) = naive_conv(&x, (b, c, h, w), &wt, (o, k, k), &bias, 1, p);
    let dy = f32_valued(random_vec(&mut rng, y.len()));
    let (dx, dw, _) = naive_conv_grads(&x, (b, c, h, w), &wt, (o, k, k), &dy, 1, p);
    // The same loops on absolute values give each output's Σ|terms|.
    let abs = |v: &[f64]| v.iter().map(|a| a.abs()).collect::<Vec<f64>>();
    let (y_scale, _, _) = naive_conv(&abs(&x), (b, c, h, w), &abs(&wt), (o, k, k), &bias, 1, p);
    let (dx_scale, dw_scale, _) = naive_conv_grads(&abs(&x), (b, c, h, w), &abs(&wt), (o, k, k), &abs(&dy), 1, p);
    let relative_rms = |actual: &[f32], exact: &[f64]| {
        let err: f64 = actual
            .iter()
            .zip(exact)
            .map(|(&a, &e)| (f64::from(a) - e).powi(2))
            .sum();
        (err / exact.iter().map(|e| e * e).sum::<f64>()).sqrt()
    };

    let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let (x32, w32, dy32) = (f(&x), f(&wt), f(&dy));
    let g = Conv2dGeometry::new(b, c, (h, w), o, (k, k), 1, p).unwrap();
    let errors = |algorithm| {
        let g = g.with_algorithm(algorithm).unwrap();
        let gy = g.forward(&x32, &w32, None);
        let (gx, gw, _) = g.backward(&x32, &w32, &dy32);
        (
            [
                error_in_eps(&gy, &y, &y_scale),
                error_in_eps(&gx, &dx, &dx_scale),
                error_in_eps(&gw, &dw, &dw_scale),
            ],
            [relative_rms(&gy, &y), relative_rms(&gx, &dx), relative_rms(&gw, &dw)],
        )
    };
    [errors(ConvAlgorithm::Winograd), errors(ConvAlgorithm::Im2col)]
}

/// Winograd's accuracy in f32 (see [`winograd_and_im2col_errors`]), forward / input grad /
/// weight grad:
/// - F(2×2, 3×3) at AlexNet conv4's depth (384 input channels, 14×14): measured 0.65, 1.15, 1.33
///   ε·Σ|terms| (im2col 0.48, 0.61, 1.21), relative RMS 5.9e-7, 1.8e-7, 3.2e-7 (im2col 3.9e-7,
///   1.1e-7, 2.4e-7). Bound: 2 ε·Σ|terms|, 3× im2col's, relative RMS 1e-6.
/// - F(2×2, 5×5) at AlexNet conv2's depth (96 input channels, pad 2): its larger transform
///   coefficients cost more: measured 7.3, 4.8, 31.0 ε·Σ|terms| (im2col 0.57, 0.40, 1.23),
///   relative RMS 2.3e-6, 1.4e-6, 2.3e-6 (im2col 3.7e-7, 1.3e-7, 2.3e-7), that is 20 ε, far below
///   what moves a training run. Bound: 48 ε·Σ|terms|, relative RMS 5e-6.
#[test]
fn winograd_f32_accuracy_bound() {
    let cases = [
        ((2, 384, 14, 14, 24), 3, 2.0, Some(3.0), 1e-6),
        ((2, 96, 14, 14, 24), 5, 48.0, None, 5e-6),
    ];
    for (shape, k, bound, im2col_ratio, rms_bound) in cases {
        let [(wino, wino_rms), (im2col, _)] = winograd_and_im2col_errors(shape, k);
        for (n, pass) in ["forward", "input grad", "weight grad"].iter().enumerate() {
            let what = format!("{k}×{k} {pass}");
            assert!(wino[n] <= bound, "{what}: Winograd error {} ε·Σ|terms|", wino[n]);
            if let Some(ratio) = im2col_ratio {
                assert!(
                    wino[n] <= ratio * im2col[n],
                    "{what}: Winograd error {} against im2col's {}",
                    wino[n],
                    im2col[n]
                );
            }
            assert!(wino_rms[n] <= rms_bound, "{what}: relative RMS error {}", wino_rms[n]);
        }
    }
}
