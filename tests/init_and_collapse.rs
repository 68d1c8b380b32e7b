//! Weight initialisation (the course's Paddle scheme and PyTorch's) against the formulas, the
//! scheme recorded in checkpoints, collapse detection in the validation pass, and training on
//! fixed batches.

use dfdx::prelude::*;
use palm_cnn::checkpoint::{Checkpoint, INIT_KEY};
use palm_cnn::models::{AlexNet, LeNetMnist, ModelKind};
use palm_cnn::network::Network;
use palm_cnn::nn::init::{draw_for, Draw};
use palm_cnn::nn::{reinit, Init};
use palm_cnn::train::{self, InMemory, OptimizerKind, TrainConfig, COLLAPSE_LOGIT_STD};

type MnistShape = (usize, Const<1>, Const<28>, Const<28>);

palm_cnn::network! {
    /// A small ReLU network whose output depends clearly on its input from the start (a sigmoid
    /// LeNet's barely does: its logits vary by about 1e-4 across random images).
    struct Toy: [1, 28, 28] -> [10] {
        conv1: palm_cnn::nn::Conv2d<1, 4, 5, 1, 0, 24, 24, E, D>,
        act1: dfdx::nn::modules::ReLU,
        pool1: palm_cnn::nn::MaxPool2d<2, 2, 12, 12>,
        flatten: palm_cnn::nn::Flatten<576>,
        fc1: dfdx::nn::modules::Linear<576, 10, E, D>,
    }
}

/// (mean, population std, max |x|) in f64.
fn stats(v: &[f32]) -> (f64, f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    let max = v.iter().map(|&x| (x as f64).abs()).fold(0.0, f64::max);
    (mean, var.sqrt(), max)
}

/// Checks a normal N(0, std) sample: mean within 4 standard errors, std within 4 % (the sample
/// std of n values has a relative error of about 1/√(2n)), and tails a uniform does not have.
fn assert_normal(name: &str, v: &[f32], std: f64) {
    let (mean, s, max) = stats(v);
    let n = v.len() as f64;
    assert!(mean.abs() < 4.0 * std / n.sqrt(), "{name}: mean {mean}, std {std}");
    assert!(
        (s / std - 1.0).abs() < 4.0 / (2.0 * n).sqrt() + 0.002,
        "{name}: std {s}, expected {std}"
    );
    assert!(
        max > 3.0 * std,
        "{name}: no value beyond 3 std ({max} vs {std}): not normal"
    );
}

/// Checks a uniform U(±bound) sample: inside the bounds, reaching close to them, std bound/√3.
fn assert_uniform(name: &str, v: &[f32], bound: f64) {
    let (mean, s, max) = stats(v);
    let n = v.len() as f64;
    let std = bound / 3f64.sqrt();
    assert!(max <= bound * (1.0 + 1e-6), "{name}: {max} beyond the bound {bound}");
    assert!(
        max > bound * (1.0 - 20.0 / n),
        "{name}: largest {max} far inside the bound {bound}"
    );
    assert!(mean.abs() < 4.0 * std / n.sqrt(), "{name}: mean {mean}");
    assert!(
        (s / std - 1.0).abs() < 4.0 / (1.25 * n).sqrt() + 0.002,
        "{name}: std {s}, expected {std}"
    );
}

#[test]
fn draws_follow_the_hand_computed_formulas() {
    // conv1 of AlexNet: fan_in 3·11·11 = 363.
    assert_eq!(
        draw_for(Init::Paddle, "conv1.weight", &[96, 3, 11, 11], None),
        Some(Draw::Normal {
            std: (2.0f64 / 363.0).sqrt()
        })
    );
    assert_eq!(
        draw_for(Init::PyTorch, "conv1.weight", &[96, 3, 11, 11], None),
        Some(Draw::Uniform {
            bound: 1.0 / 363f64.sqrt()
        })
    );
    // fc1 of AlexNet: Xavier bound √(6 / (12544 + 4096)) = 0.018989…
    match draw_for(Init::Paddle, "fc1.weight", &[4096, 12544], None) {
        Some(Draw::Uniform { bound }) => assert!((bound - 0.018_989_2).abs() < 1e-6, "{bound}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        draw_for(Init::Paddle, "fc1.bias", &[4096], Some(12544)),
        Some(Draw::Zeros)
    );
    assert_eq!(
        draw_for(Init::PyTorch, "fc1.bias", &[4096], Some(12544)),
        Some(Draw::Uniform {
            bound: 1.0 / 12544f64.sqrt()
        })
    );
    assert_eq!(draw_for(Init::Paddle, "drop1.p", &[], None), None);
    assert_eq!("pytorch".parse::<Init>(), Ok(Init::PyTorch));
    assert!("xavier".parse::<Init>().is_err());
}

#[test]
fn paddle_scheme_per_layer_of_alexnet() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = dev.build_module::<AlexNet, f32>();
    reinit(&mut m, Init::Paddle, 7);
    let convs = [
        ("conv1", m.conv1.weight.as_vec(), m.conv1.bias.as_vec(), 3 * 11 * 11),
        ("conv2", m.conv2.weight.as_vec(), m.conv2.bias.as_vec(), 96 * 5 * 5),
        ("conv3", m.conv3.weight.as_vec(), m.conv3.bias.as_vec(), 256 * 9),
        ("conv4", m.conv4.weight.as_vec(), m.conv4.bias.as_vec(), 384 * 9),
        ("conv5", m.conv5.weight.as_vec(), m.conv5.bias.as_vec(), 384 * 9),
    ];
    for (name, w, b, fan_in) in &convs {
        assert_normal(name, w, (2.0 / *fan_in as f64).sqrt());
        assert!(b.iter().all(|&x| x == 0.0), "{name}: bias not zero");
    }
    let fcs = [
        ("fc1", m.fc1.weight.as_vec(), m.fc1.bias.as_vec(), 12544, 4096),
        ("fc2", m.fc2.weight.as_vec(), m.fc2.bias.as_vec(), 4096, 4096),
        ("fc3", m.fc3.weight.as_vec(), m.fc3.bias.as_vec(), 4096, 1),
    ];
    for (name, w, b, fan_in, fan_out) in &fcs {
        assert_uniform(name, w, (6.0 / (fan_in + fan_out) as f64).sqrt());
        assert!(b.iter().all(|&x| x == 0.0), "{name}: bias not zero");
    }
}

#[test]
fn pytorch_scheme_per_layer_of_lenet() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = dev.build_module::<LeNetMnist, f32>();
    reinit(&mut m, Init::PyTorch, 3);
    let layers = [
        ("conv1", m.conv1.weight.as_vec(), m.conv1.bias.as_vec(), 25),
        ("conv2", m.conv2.weight.as_vec(), m.conv2.bias.as_vec(), 6 * 25),
        ("conv3", m.conv3.weight.as_vec(), m.conv3.bias.as_vec(), 16 * 16),
        ("fc1", m.fc1.weight.as_vec(), m.fc1.bias.as_vec(), 120),
    ];
    for (name, w, b, fan_in) in &layers {
        let bound = 1.0 / (*fan_in as f64).sqrt();
        assert_uniform(name, w, bound);
        assert!(
            b.iter().all(|&x| (x.abs() as f64) <= bound),
            "{name}: bias beyond {bound}"
        );
        assert!(b.iter().any(|&x| x != 0.0), "{name}: bias all zero");
    }
}

#[test]
fn reinit_is_deterministic_per_seed() {
    let dev = Cpu::seed_from_u64(0);
    let mut a = dev.build_module::<LeNetMnist, f32>();
    let mut b = dev.build_module::<LeNetMnist, f32>();
    reinit(&mut a, Init::Paddle, 11);
    reinit(&mut b, Init::Paddle, 11);
    assert_eq!(a.conv2.weight.as_vec(), b.conv2.weight.as_vec());
    assert_eq!(a.fc2.weight.as_vec(), b.fc2.weight.as_vec());
    reinit(&mut b, Init::Paddle, 12);
    assert_ne!(a.conv2.weight.as_vec(), b.conv2.weight.as_vec());
}

#[test]
fn checkpoints_record_the_scheme() {
    let dir = tempfile::tempdir().unwrap();
    for init in Init::ALL {
        let path = dir.path().join(format!("{init}.safetensors"));
        let net = Network::with_init(ModelKind::LeNetMnist, 5, init);
        assert_eq!(net.init(), Some(init));
        net.save(&path).unwrap();
        let ck = Checkpoint::read(&path).unwrap();
        assert_eq!(ck.metadata.get(INIT_KEY).map(String::as_str), Some(init.name()));
        let back = Network::load(&path).unwrap();
        assert_eq!(back.init(), Some(init));
        assert_eq!(back.logits(&[0.25; 784]).unwrap(), net.logits(&[0.25; 784]).unwrap());
    }
    // The course's models start with the course's scheme.
    assert_eq!(Network::new(ModelKind::LeNetMnist, 1).init(), Some(Init::Paddle));
    assert_eq!(TrainConfig::course(ModelKind::AlexNet).init, Init::Paddle);
}

#[test]
fn a_constant_output_is_reported_as_collapse() {
    let dev = Cpu::seed_from_u64(0);
    let data = InMemory::<MnistShape, 10>::random(30, 4);
    let mut model = dev.build_module::<Toy, f32>();
    let healthy = train::evaluate(&model, &dev, &data, 7).unwrap();
    assert!(healthy.logit_std > 10.0 * COLLAPSE_LOGIT_STD, "{}", healthy.logit_std);
    assert!(!healthy.collapsed());
    assert!(!healthy.console_line().contains("COLLAPSED"));

    // Zero weights in the last layer: every image gets the bias, whatever it shows.
    model.fc1.weight = dev.zeros();
    let dead = train::evaluate(&model, &dev, &data, 7).unwrap();
    assert_eq!(dead.logit_std, 0.0);
    assert!(dead.collapsed());
    let line = dead.console_line();
    assert!(line.starts_with("[validation] accuracy/loss: "), "{line}");
    assert!(line.contains("COLLAPSED") && line.contains("30 images"), "{line}");
    assert!(dead.single_class().is_some());
}

#[test]
fn one_class_predictions_are_named_in_the_console_line() {
    let dev = Cpu::seed_from_u64(0);
    let data = InMemory::<MnistShape, 10>::random(12, 9);
    let mut model = dev.build_module::<Toy, f32>();
    // A huge bias on class 3 wins every arg-max while the logits still vary with the image.
    let mut bias = vec![0.0f32; 10];
    bias[3] = 1e3;
    model.fc1.bias.copy_from(&bias);
    let ev = train::evaluate(&model, &dev, &data, 5).unwrap();
    assert!(!ev.collapsed());
    assert_eq!(ev.single_class(), Some(3));
    assert!(
        ev.console_line().contains("every image is predicted 3"),
        "{}",
        ev.console_line()
    );
}

#[test]
fn train_steps_cycle_the_batches_in_order() {
    let dev = Cpu::seed_from_u64(0);
    let data = InMemory::<MnistShape, 10>::random(25, 6);
    let mut model = dev.build_module::<LeNetMnist, f32>();
    let cfg = TrainConfig {
        batch_size: 10,
        optimizer: OptimizerKind::Momentum,
        lr: 0.0, // no update: every pass over the three batches gives the same losses
        verbose: false,
        ..TrainConfig::course(ModelKind::LeNetMnist)
    };
    let losses = train::train_steps(&mut model, &dev, &data, &cfg, 7).unwrap();
    assert_eq!(losses.len(), 7);
    assert_eq!(losses[0], losses[3]);
    assert_eq!(losses[1], losses[4]);
    assert_eq!(losses[2], losses[5]);
    assert_eq!(losses[0], losses[6]);
    // The first loss is the first batch's, as the evaluation pass computes it.
    let first = InMemory::<MnistShape, 10>::new(data.images[..10 * 784].to_vec(), data.labels[..10].to_vec()).unwrap();
    let ev = train::evaluate(&model, &dev, &first, 10).unwrap();
    assert!(
        (ev.loss - losses[0] as f64).abs() < 1e-5,
        "{} vs {}",
        ev.loss,
        losses[0]
    );
    // With a learning rate, the loss on a repeated batch goes down.
    let cfg = TrainConfig { lr: 0.05, ..cfg };
    let losses = train::train_steps(&mut model, &dev, &data, &cfg, 9).unwrap();
    assert!(losses[6] < losses[0], "{losses:?}");
}
