//! Batch normalisation, channel concatenation and the VGG / GoogLeNet / ResNet blocks against
//! independent references: naive f64 loops, hand-computed values, central finite differences,
//! and the parameter counts the course's networks are known to have.

use dfdx::prelude::*;
use palm_cnn::models::{FirstBottleneck, GoogLeNet, IdentityBottleneck, Inception, ModelKind, ResNet50, Vgg16};
use palm_cnn::nn::BatchNorm2d;
use palm_cnn::ops::{batch_norm2d, concat_channels4, BatchNormMode};
mod common;

use common::{assert_close, numeric_grad, random_vec};
use rand::{rngs::StdRng, SeedableRng};

const B: usize = 3;
const C: usize = 4;
const H: usize = 3;
const W: usize = 5;

/// Batch normalisation written out: per channel, mean and biased variance over batch and plane.
fn naive_batch_norm(
    x: &[f64],
    w: &[f64],
    b: &[f64],
    stats: Option<(&[f64], &[f64])>,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let plane = H * W;
    let (mut means, mut vars) = (vec![0.0; C], vec![0.0; C]);
    for c in 0..C {
        let vals: Vec<f64> = (0..B)
            .flat_map(|bi| x[(bi * C + c) * plane..][..plane].to_vec())
            .collect();
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        means[c] = m;
        vars[c] = vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / vals.len() as f64;
    }
    let (use_m, use_v) = stats
        .map(|(m, v)| (m.to_vec(), v.to_vec()))
        .unwrap_or((means.clone(), vars.clone()));
    let mut out = vec![0.0; x.len()];
    for bi in 0..B {
        for c in 0..C {
            for i in 0..plane {
                let at = (bi * C + c) * plane + i;
                out[at] = w[c] * (x[at] - use_m[c]) / (use_v[c] + 1e-5).sqrt() + b[c];
            }
        }
    }
    (out, means, vars)
}

/// Fixed statistics for evaluation mode.
const EVAL_MEAN: [f64; C] = [0.1, -0.2, 0.3, 0.0];
const EVAL_VAR: [f64; C] = [0.5, 1.5, 0.8, 2.0];

/// Runs the op on f64 tensors (running statistics starting at 0.5 and 2.0 in training mode,
/// [`EVAL_MEAN`] and [`EVAL_VAR`] in evaluation mode). Returns the output, the running
/// statistics after the call, and the gradients of `Σ coeff · output` with respect to x, weight
/// and bias.
fn run_bn(x: &[f64], w: &[f64], b: &[f64], train: bool, coeff: &[f64]) -> (Vec<f64>, [Vec<f64>; 2], [Vec<f64>; 3]) {
    let dev = Cpu::default();
    let xt = dev.tensor_from_vec(x.to_vec(), (B, C, H, W));
    let wt = dev.tensor_from_vec(w.to_vec(), (C,));
    let bt = dev.tensor_from_vec(b.to_vec(), (C,));
    let (mut rm, mut rv) = (vec![0.5; C], vec![2.0; C]);
    let mode = if train {
        BatchNormMode::Train {
            running_mean: &mut rm,
            running_var: &mut rv,
            momentum: 0.9,
        }
    } else {
        BatchNormMode::Eval {
            mean: &EVAL_MEAN,
            var: &EVAL_VAR,
        }
    };
    let y = batch_norm2d(xt.leaky_trace(), &wt, &bt, mode, 1e-5).unwrap();
    let out = y.as_vec();
    let loss = (y * dev.tensor_from_vec(coeff.to_vec(), (B, C, H, W))).sum();
    let g = loss.backward();
    let grads = [g.get(&xt).as_vec(), g.get(&wt).as_vec(), g.get(&bt).as_vec()];
    (out, [rm, rv], grads)
}

#[test]
fn batch_norm_matches_naive_reference_and_updates_running_statistics() {
    let mut rng = StdRng::seed_from_u64(1);
    let x: Vec<f64> = random_vec(&mut rng, B * C * H * W)
        .iter()
        .map(|v| 3.0 * v + 1.0)
        .collect();
    let (w, b) = (random_vec(&mut rng, C), random_vec(&mut rng, C));
    let zeros = vec![0.0; x.len()];
    for train in [true, false] {
        let (out, [rm, rv], _) = run_bn(&x, &w, &b, train, &zeros);
        let stats = (!train).then_some((&EVAL_MEAN[..], &EVAL_VAR[..]));
        let (expected, means, vars) = naive_batch_norm(&x, &w, &b, stats);
        assert_close(
            &out,
            &expected,
            1e-10,
            if train { "train output" } else { "eval output" },
        );
        if train {
            // running = 0.9·running + 0.1·batch, from 0.5 and 2.0.
            let em: Vec<f64> = means.iter().map(|m| 0.9 * 0.5 + 0.1 * m).collect();
            let ev: Vec<f64> = vars.iter().map(|v| 0.9 * 2.0 + 0.1 * v).collect();
            assert_close(&rm, &em, 1e-12, "running mean");
            assert_close(&rv, &ev, 1e-12, "running variance");
        } else {
            assert_eq!(
                (rm, rv),
                (vec![0.5; C], vec![2.0; C]),
                "evaluation leaves the running statistics"
            );
        }
    }
    // A hand-computed case: one channel's values 1, 3 (mean 2, variance 1) → ±1/√(1 + 1e-5).
    let dev = Cpu::default();
    let x = dev.tensor_from_vec(vec![1.0f64, 3.0], (2usize, 1usize, 1usize, 1usize));
    let (one, zero) = (
        dev.tensor_from_vec(vec![1.0], (1usize,)),
        dev.tensor_from_vec(vec![0.0], (1usize,)),
    );
    let (mut m, mut v) = (vec![0.0], vec![1.0]);
    let mode = BatchNormMode::Train {
        running_mean: &mut m,
        running_var: &mut v,
        momentum: 0.9,
    };
    let y = batch_norm2d(x, &one, &zero, mode, 1e-5).unwrap().as_vec();
    let k = 1.0 / (1.0f64 + 1e-5).sqrt();
    assert_close(&y, &[-k, k], 1e-14, "hand-computed");
    assert_close(&m, &[0.2], 1e-14, "hand-computed running mean");
    assert_close(&v, &[1.0], 1e-14, "hand-computed running variance (biased, as Paddle)");
}

#[test]
fn batch_norm_backward_matches_finite_differences() {
    let mut rng = StdRng::seed_from_u64(2);
    let x = random_vec(&mut rng, B * C * H * W);
    let (w, b) = (random_vec(&mut rng, C), random_vec(&mut rng, C));
    let coeff = random_vec(&mut rng, x.len());
    for train in [true, false] {
        let (_, _, [dx, dw, db]) = run_bn(&x, &w, &b, train, &coeff);
        let what = if train { "train" } else { "eval" };
        let nx = numeric_grad(&x, &coeff, &|v| run_bn(v, &w, &b, train, &coeff).0);
        let nw = numeric_grad(&w, &coeff, &|v| run_bn(&x, v, &b, train, &coeff).0);
        let nb = numeric_grad(&b, &coeff, &|v| run_bn(&x, &w, v, train, &coeff).0);
        assert_close(&dx, &nx, 1e-6, &format!("{what} input gradient"));
        assert_close(&dw, &nw, 1e-6, &format!("{what} weight gradient"));
        assert_close(&db, &nb, 1e-6, &format!("{what} bias gradient"));
    }
}

/// Runs the concatenation of four parts with 1, 2, 3 and 1 channels over a 2×2×3 batch.
fn run_concat(parts: &[Vec<f64>; 4], coeff: &[f64]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let dev = Cpu::default();
    let ch = [1usize, 2, 3, 1];
    let t: Vec<_> = (0..4)
        .map(|i| dev.tensor_from_vec(parts[i].clone(), (2usize, ch[i], 2usize, 3usize)))
        .collect();
    let y = concat_channels4(
        (t[0].leaky_trace(), t[1].retaped(), t[2].retaped(), t[3].retaped()),
        Const::<7>,
    )
    .unwrap();
    let out = y.as_vec();
    let g = (y * dev.tensor_from_vec(coeff.to_vec(), (2usize, Const::<7>, 2usize, 3usize)))
        .sum()
        .backward();
    (out, t.iter().map(|p| g.get(p).as_vec()).collect())
}

#[test]
fn concat_channels_joins_in_order_and_routes_gradients_back() {
    let mut rng = StdRng::seed_from_u64(3);
    let ch = [1usize, 2, 3, 1];
    let parts: [Vec<f64>; 4] = std::array::from_fn(|i| random_vec(&mut rng, 2 * ch[i] * 6));
    let coeff = random_vec(&mut rng, 2 * 7 * 6);
    let (out, grads) = run_concat(&parts, &coeff);
    // Sample b, channel c of the output is channel c − (channels before) of its part.
    let mut expected = Vec::new();
    for b in 0..2 {
        for (p, &c) in parts.iter().zip(&ch) {
            expected.extend_from_slice(&p[b * c * 6..(b + 1) * c * 6]);
        }
    }
    assert_eq!(out, expected);
    // The gradient of Σ coeff · out with respect to a part is the coefficients it was joined with.
    for i in 0..4 {
        let numeric = numeric_grad(&parts[i], &coeff, &|v| {
            let mut p = parts.clone();
            p[i] = v.to_vec();
            run_concat(&p, &coeff).0
        });
        assert_close(&grads[i], &numeric, 1e-8, &format!("part {i} gradient"));
    }
}

#[test]
fn course_networks_have_their_known_parameter_counts() {
    let dev = Cpu::default();
    // VGG-16, GoogLeNet (no auxiliary heads) and ResNet-50 with one output logit.
    assert_eq!(dev.build_module::<Vgg16, f32>().num_trainable_params(), 134_264_641);
    assert_eq!(dev.build_module::<GoogLeNet, f32>().num_trainable_params(), 5_974_577);
    let resnet = dev.build_module::<ResNet50, f32>();
    assert_eq!(resnet.num_trainable_params(), 23_510_081);
    // The running statistics: two per channel of every batch normalisation, not trainable.
    let names: Vec<(String, usize)> = palm_cnn::checkpoint::expected(&resnet)
        .into_iter()
        .map(|t| (t.name, t.shape.iter().product()))
        .collect();
    let running: usize = names
        .iter()
        .filter(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var"))
        .map(|(_, len)| len)
        .sum();
    assert_eq!(running, 53_120);
    // PyTorch's names for a batch normalisation's tensors.
    for leaf in ["weight", "bias", "running_mean", "running_var"] {
        let name = format!("bb_1_0.short.bn.{leaf}");
        assert!(names.iter().any(|(n, len)| *n == name && *len == 512), "{name} missing");
    }
    assert!(
        !names.iter().any(|(n, _)| n.starts_with("bb_1_0.conv0.conv.bias")),
        "ConvBn has no bias"
    );
}

/// Output shape of every named layer in the summary of `kind` for a batch of 2.
fn stage_shapes(kind: ModelKind, layers: &[&str]) -> Vec<Vec<usize>> {
    let summary = kind.summary(2);
    layers
        .iter()
        .map(|l| {
            summary
                .rows
                .iter()
                .find(|r| r.name == *l)
                .unwrap_or_else(|| panic!("no layer {l}"))
                .output_shape
                .clone()
        })
        .collect()
}

#[test]
fn every_stage_has_the_course_shape() {
    assert_eq!(
        stage_shapes(
            ModelKind::Vgg16,
            &["pool1", "pool2", "pool3", "pool4", "pool5", "fc1", "fc3"]
        ),
        vec![
            vec![2, 64, 112, 112],
            vec![2, 128, 56, 56],
            vec![2, 256, 28, 28],
            vec![2, 512, 14, 14],
            vec![2, 512, 7, 7],
            vec![2, 4096],
            vec![2, 1]
        ]
    );
    assert_eq!(
        stage_shapes(
            ModelKind::GoogLeNet,
            &["conv1", "pool1", "pool2", "block3_2", "pool3", "block4_5", "pool4", "block5_2", "pool5", "fc"]
        ),
        vec![
            vec![2, 64, 224, 224],
            vec![2, 64, 112, 112],
            vec![2, 192, 56, 56],
            vec![2, 480, 56, 56],
            vec![2, 480, 28, 28],
            vec![2, 832, 28, 28],
            vec![2, 832, 14, 14],
            vec![2, 1024, 14, 14],
            vec![2, 1024],
            vec![2, 1]
        ]
    );
    assert_eq!(
        stage_shapes(
            ModelKind::ResNet50,
            &[
                "conv",
                "pool2d_max",
                "bb_0_2",
                "bb_1_3",
                "bb_2_5",
                "bb_3_2",
                "pool2d_avg",
                "out"
            ]
        ),
        vec![
            vec![2, 64, 112, 112],
            vec![2, 64, 56, 56],
            vec![2, 256, 56, 56],
            vec![2, 512, 28, 28],
            vec![2, 1024, 14, 14],
            vec![2, 2048, 7, 7],
            vec![2, 2048],
            vec![2, 1]
        ]
    );
}

type TinyInception = Inception<3, 2, 2, 3, 1, 2, 1, 8, 5, f64, Cpu>;

#[test]
fn inception_is_its_four_branches_concatenated() {
    let dev = Cpu::seed_from_u64(4);
    let block = dev.build_module::<TinyInception, f64>();
    let x = dev.sample_normal::<Rank4<2, 3, 5, 5>>();
    let y = block.forward(x.clone()).as_vec();
    // The branches by hand, with the block's own layers.
    let relu = |t: Tensor<Rank4<2, 2, 5, 5>, f64, Cpu>| t.relu();
    let b1 = relu(block.p1_1.forward(x.clone())).as_vec();
    let b2 = block.p2_2.forward(block.p2_1.forward(x.clone()).relu()).relu().as_vec();
    let b3 = block.p3_2.forward(block.p3_1.forward(x.clone()).relu()).relu().as_vec();
    let b4 = block.p4_2.forward(block.p4_1.forward(x)).relu().as_vec();
    let mut expected = Vec::new();
    for b in 0..2 {
        for (part, c) in [(&b1, 2), (&b2, 3), (&b3, 2), (&b4, 1)] {
            expected.extend_from_slice(&part[b * c * 25..(b + 1) * c * 25]);
        }
    }
    assert_close(&y, &expected, 1e-14, "inception");
}

#[test]
fn inception_input_gradient_matches_finite_differences() {
    let dev = Cpu::seed_from_u64(5);
    let block = dev.build_module::<TinyInception, f64>();
    let mut rng = StdRng::seed_from_u64(6);
    let x = random_vec(&mut rng, 2 * 3 * 25);
    let coeff = random_vec(&mut rng, 2 * 8 * 25);
    let run = |v: &[f64]| {
        block
            .forward(dev.tensor_from_vec(v.to_vec(), (2usize, Const::<3>, Const::<5>, Const::<5>)))
            .as_vec()
    };
    let xt = dev.tensor_from_vec(x.clone(), (2usize, Const::<3>, Const::<5>, Const::<5>));
    let y = block.forward(xt.leaky_trace());
    let g = (y * dev.tensor_from_vec(coeff.clone(), (2usize, Const::<8>, Const::<5>, Const::<5>)))
        .sum()
        .backward();
    assert_close(
        &g.get(&xt).as_vec(),
        &numeric_grad(&x, &coeff, &run),
        1e-6,
        "inception input gradient",
    );
}

type TinyFirst = FirstBottleneck<3, 2, 8, 2, 6, 3, f64, Cpu>;
type TinyIdentity = IdentityBottleneck<8, 2, 3, f64, Cpu>;

#[test]
fn bottleneck_gradients_match_finite_differences_in_both_modes() {
    let dev = Cpu::seed_from_u64(7);
    let mut block = dev.build_module::<(TinyFirst, TinyIdentity), f64>();
    let mut rng = StdRng::seed_from_u64(8);
    let x = random_vec(&mut rng, 2 * 3 * 36);
    let coeff = random_vec(&mut rng, 2 * 8 * 9);
    let shape = (2usize, Const::<3>, Const::<6>, Const::<6>);
    let out_shape = (2usize, Const::<8>, Const::<3>, Const::<3>);
    // Evaluation: running statistics (made non-trivial by one training pass first).
    let _ = block.forward_mut(
        dev.tensor_from_vec(x.iter().map(|v| v * 2.0).collect(), shape)
            .leaky_trace(),
    );
    let xt = dev.tensor_from_vec(x.clone(), shape);
    let g = (block.forward(xt.leaky_trace()) * dev.tensor_from_vec(coeff.clone(), out_shape))
        .sum()
        .backward();
    let eval = |v: &[f64]| block.forward(dev.tensor_from_vec(v.to_vec(), shape)).as_vec();
    assert_close(
        &g.get(&xt).as_vec(),
        &numeric_grad(&x, &coeff, &eval),
        1e-6,
        "eval input gradient",
    );
    // Training: batch statistics, which depend on the input too.
    let mut trainer = block.clone();
    let g = (trainer.forward_mut(xt.leaky_trace()) * dev.tensor_from_vec(coeff.clone(), out_shape))
        .sum()
        .backward();
    let train = |v: &[f64]| {
        let mut b = block.clone();
        b.forward_mut(dev.tensor_from_vec(v.to_vec(), shape).leaky_trace())
            .as_vec()
    };
    assert_close(
        &g.get(&xt).as_vec(),
        &numeric_grad(&x, &coeff, &train),
        1e-6,
        "train input gradient",
    );
    // The projection shortcut's weights get gradients too.
    assert!(g
        .get(&trainer.0.short.conv.weight)
        .as_vec()
        .iter()
        .any(|v| v.abs() > 1e-9));
}

#[test]
fn batch_norm_layer_trains_on_batch_statistics_and_evaluates_on_running_ones() {
    let dev = Cpu::default();
    let mut bn = dev.build_module::<BatchNorm2d<2>, f32>();
    let x = dev.tensor_from_vec(
        vec![1.0f32, 3.0, 10.0, 20.0],
        (2usize, Const::<2>, Const::<1>, Const::<1>),
    );
    let y = bn.forward_mut(x.leaky_trace()).as_vec();
    // Channel 0: 1, 10 → mean 5.5, variance 20.25; channel 1: 3, 20 → mean 11.5, variance 72.25.
    let expect = [
        -4.5 / (20.25f32 + 1e-5).sqrt(),
        -8.5 / (72.25f32 + 1e-5).sqrt(),
        4.5 / (20.25f32 + 1e-5).sqrt(),
        8.5 / (72.25f32 + 1e-5).sqrt(),
    ];
    for (a, e) in y.iter().zip(expect) {
        assert!((a - e).abs() < 1e-5, "{y:?}");
    }
    assert_eq!(bn.running_mean.as_vec(), vec![0.55, 1.15]);
    let rv = bn.running_var.as_vec();
    assert!(
        (rv[0] - (0.9 + 2.025)).abs() < 1e-5 && (rv[1] - (0.9 + 7.225)).abs() < 1e-5,
        "{rv:?}"
    );
    // Evaluation uses those running statistics.
    let e = bn.forward(x).as_vec();
    assert!((e[0] - (1.0 - 0.55) / (rv[0] + 1e-5).sqrt()).abs() < 1e-5, "{e:?}");
}

#[test]
fn both_initialisations_start_batch_norm_at_identity() {
    for init in palm_cnn::nn::Init::ALL {
        let mut net = Cpu::default().build_module::<ResNet50, f32>();
        palm_cnn::nn::reinit(&mut net, init, 3);
        let bn = &net.bb_2_0.conv1.bn;
        assert!(bn.weight.as_vec().iter().all(|&v| v == 1.0), "{init}: weight");
        assert!(bn.bias.as_vec().iter().all(|&v| v == 0.0), "{init}: bias");
        assert!(
            bn.running_var.as_vec().iter().all(|&v| v == 1.0),
            "{init}: running variance"
        );
        // The convolution before it was redrawn.
        assert!(net.bb_2_0.conv1.conv.weight.as_vec().iter().any(|&v| v != 0.0));
    }
}

#[test]
fn summaries_spell_out_branches_and_shortcuts() {
    let kind_of = |model: ModelKind, layer: &str| {
        model
            .summary(1)
            .rows
            .into_iter()
            .find(|r| r.name == layer)
            .map(|r| r.kind)
            .unwrap()
    };
    assert_eq!(
        kind_of(ModelKind::GoogLeNet, "block3_1"),
        "Inception 1×1 64 | 1×1 96→3×3 128 | 1×1 16→5×5 32 | pool→1×1 32"
    );
    assert_eq!(
        kind_of(ModelKind::ResNet50, "bb_1_0"),
        "Bottleneck 1×1 128→3×3 128 stride 2→1×1 512, projection"
    );
    assert_eq!(
        kind_of(ModelKind::ResNet50, "bb_1_1"),
        "Bottleneck 1×1 128→3×3 128→1×1 512, identity"
    );
    assert_eq!(kind_of(ModelKind::ResNet50, "conv"), "ConvBn");
}

#[test]
fn resnet_output_layer_starts_as_the_course_sets_it() {
    use palm_cnn::checkpoint::Checkpoint;
    let tmp = tempfile::tempdir().unwrap();
    let bound = 1.0 / 2048f32.sqrt();
    for (init, expect_course) in [(palm_cnn::nn::Init::Paddle, true), (palm_cnn::nn::Init::PyTorch, false)] {
        let path = tmp.path().join(format!("{init}.safetensors"));
        palm_cnn::network::Network::with_init(ModelKind::ResNet50, 1, init)
            .save(&path)
            .unwrap();
        let (_, w) = Checkpoint::read(&path).unwrap().f32_tensor("out.weight").unwrap();
        let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // 2048 uniform draws in ±bound reach past 0.99·bound; Xavier's ±0.054 would exceed it.
        assert!(
            max <= bound && max > 0.99 * bound,
            "{init}: max |w| {max}, bound {bound}"
        );
        let (_, b) = Checkpoint::read(&path).unwrap().f32_tensor("out.bias").unwrap();
        assert_eq!(b.iter().all(|&v| v == 0.0), expect_course, "{init}: bias");
    }
}
