//! The layers inside dfdx's module system, and the course's models: parameter counts, layer
//! output shapes, initialisation, optimizers, gradient zeroing and safetensors.

use dfdx::optim::{Adam, AdamConfig, Momentum, Sgd, SgdConfig, WeightDecay};
use dfdx::prelude::*;
use palm_cnn::models::{AlexNet, LeNetMnist, LeNetPalm, ModelKind};
use palm_cnn::nn::{AvgPool2d, Conv2d, Flatten, GlobalAvgPool, MaxPool2d};
use palm_cnn::summary::Summarize;

type Tiny = (
    (Conv2d<1, 3, 3, 1, 1, 6, 6>, Sigmoid, MaxPool2d<2, 2, 3, 3>),
    (Conv2d<3, 4, 2, 1, 0, 2, 2>, ReLU, AvgPool2d<2, 1, 1, 1>),
    (Flatten<4>, Linear<4, 2>),
);

#[test]
fn parameter_counts_match_the_course() {
    let dev = Cpu::default();
    // 1·6·25+6 + 6·16·25+16 + 16·120·16+120 + 120·64+64 + 64·10+10
    assert_eq!(dev.build_module::<LeNetMnist, f32>().num_trainable_params(), 41_806);
    // 3·6·25+6 + 2,416 + 30,840 + 300,000·64+64 + 64+1
    assert_eq!(dev.build_module::<LeNetPalm, f32>().num_trainable_params(), 19_233_841);
    assert_eq!(dev.build_module::<AlexNet, f32>().num_trainable_params(), 71_916_929);
}

fn shapes(kind: ModelKind, batch: usize) -> Vec<(String, Vec<usize>)> {
    kind.summary(batch)
        .rows
        .into_iter()
        .map(|r| (r.name, r.output_shape))
        .collect()
}

fn expect(rows: &[(&str, &[usize])]) -> Vec<(String, Vec<usize>)> {
    rows.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect()
}

#[test]
fn lenet_mnist_layer_shapes_match_the_course_printout() {
    // The course prints these for paddle.randn([3, 1, 28, 28]).
    assert_eq!(
        shapes(ModelKind::LeNetMnist, 3),
        expect(&[
            ("conv1", &[3, 6, 24, 24]),
            ("act1", &[3, 6, 24, 24]),
            ("pool1", &[3, 6, 12, 12]),
            ("conv2", &[3, 16, 8, 8]),
            ("act2", &[3, 16, 8, 8]),
            ("pool2", &[3, 16, 4, 4]),
            ("conv3", &[3, 120, 1, 1]),
            ("act3", &[3, 120, 1, 1]),
            ("flatten", &[3, 120]),
            ("fc1", &[3, 64]),
            ("act4", &[3, 64]),
            ("fc2", &[3, 10]),
        ])
    );
}

#[test]
fn lenet_palm_and_alexnet_layer_shapes() {
    let lenet = shapes(ModelKind::LeNetPalm, 2);
    let conv_sizes: Vec<usize> = lenet
        .iter()
        .filter(|(n, _)| n.starts_with("conv") || n.starts_with("pool"))
        .map(|(_, s)| s[2])
        .collect();
    assert_eq!(conv_sizes, [220, 110, 106, 53, 50]);
    assert_eq!(lenet.iter().find(|(n, _)| n == "flatten").unwrap().1, [2, 300_000]);
    assert_eq!(lenet.last().unwrap().1, [2, 1]);

    let alexnet = shapes(ModelKind::AlexNet, 1);
    let get = |name: &str| alexnet.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(get("conv1"), [1, 96, 56, 56]);
    assert_eq!(get("pool1"), [1, 96, 28, 28]);
    assert_eq!(get("conv2"), [1, 256, 28, 28]);
    assert_eq!(get("pool2"), [1, 256, 14, 14]);
    assert_eq!(get("conv3"), [1, 384, 14, 14]);
    assert_eq!(get("conv4"), [1, 384, 14, 14]);
    assert_eq!(get("conv5"), [1, 256, 14, 14]);
    assert_eq!(get("pool5"), [1, 256, 7, 7]);
    assert_eq!(get("flatten"), [1, 12_544]);
    assert_eq!(get("fc1"), [1, 4096]);
    assert_eq!(get("fc2"), [1, 4096]);
    assert_eq!(get("fc3"), [1, 1]);
}

#[test]
fn summary_text_and_html_list_every_layer_and_the_total() {
    let dev = Cpu::default();
    let summary = dev.build_module::<LeNetMnist, f32>().summary(3);
    assert_eq!(summary.total_params(), 41_806);
    let text = summary.to_string();
    assert!(
        text.contains("conv1    Conv2d     [3, 6, 24, 24]           156"),
        "{text}"
    );
    assert!(text.lines().last().unwrap().ends_with("41,806"), "{text}");
    let html = summary.to_html();
    assert_eq!(html.matches("<tr><td>").count(), 12);
    assert!(html.contains("<td>fc2</td><td>Linear</td><td>[3, 10]</td>"));
}

#[test]
fn tuples_of_our_layers_and_dfdx_layers_build_and_run() {
    let dev = Cpu::default();
    let model = dev.build_module::<Tiny, f32>();
    assert_eq!(
        model.num_trainable_params(),
        (9 * 3 + 3) + (3 * 4 * 4 + 4) + (4 * 2 + 2)
    );
    let y = model.forward(dev.sample_normal::<Rank4<5, 1, 6, 6>>());
    assert_eq!(y.shape().concrete(), [5, 2]);
    // Runtime batch dimension too.
    let y = model.forward(dev.sample_normal_like(&(7, Const::<1>, Const::<6>, Const::<6>)));
    assert_eq!(y.shape().concrete(), [7, 2]);
    let ones: Tensor<Rank4<2, 3, 4, 4>, f32, _> = dev.ones();
    let pooled = GlobalAvgPool.forward(ones);
    assert_eq!(pooled.array(), [[1.0; 3]; 2]);
}

#[test]
fn initialisation_is_pytorch_kaiming_uniform() {
    // kaiming_uniform_(a=√5) gives bound = gain·√(3/fan_in) with gain = √(2/(1+5)): 1/√fan_in.
    let dev = Cpu::seed_from_u64(3);
    let model = dev.build_module::<AlexNet, f32>();
    for (name, w, fan_in) in [
        ("conv1", model.conv1.weight.as_vec(), 3 * 11 * 11),
        ("conv3", model.conv3.weight.as_vec(), 256 * 9),
        ("fc2", model.fc2.weight.as_vec(), 4096),
    ] {
        let bound = 1.0 / (fan_in as f64).sqrt();
        let max = w.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
        let var = w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / w.len() as f64;
        assert!(
            max <= bound && max > 0.99 * bound,
            "{name}: max |w| {max} vs bound {bound}"
        );
        // Uniform(−b, b) has variance b²/3.
        assert!(
            (var / (bound * bound / 3.0) - 1.0).abs() < 0.05,
            "{name}: variance {var}"
        );
    }
    let b = model.conv1.bias.as_vec();
    assert!(b.iter().all(|v| (v.abs() as f64) <= 1.0 / 363f64.sqrt()));
}

/// Trains `Tiny` on a fixed batch and returns the losses.
type TinyModel = <Tiny as BuildOnDevice<Cpu, f32>>::Built;

fn train_tiny<O: Optimizer<TinyModel, Cpu, f32>>(
    dev: &Cpu,
    model: &mut TinyModel,
    opt: &mut O,
    steps: usize,
) -> Vec<f32> {
    let x = dev.sample_normal::<Rank4<8, 1, 6, 6>>();
    let y = dev.tensor([[1.0f32, 0.0]; 8]);
    let mut grads = model.alloc_grads();
    let mut losses = Vec::new();
    for _ in 0..steps {
        let logits = model.forward_mut(x.clone().traced(grads));
        let loss = binary_cross_entropy_with_logits_loss(logits, y.clone());
        losses.push(loss.array());
        grads = loss.backward();
        opt.update(model, &grads).unwrap();
        model.zero_grads(&mut grads);
    }
    losses
}

#[test]
fn adam_and_momentum_with_weight_decay_reduce_the_loss() {
    let dev = Cpu::seed_from_u64(11);
    let mut model = dev.build_module::<Tiny, f32>();
    let mut adam = Adam::new(
        &model,
        AdamConfig {
            lr: 1e-2,
            ..Default::default()
        },
    );
    let losses = train_tiny(&dev, &mut model, &mut adam, 30);
    assert!(losses[29] < 0.5 * losses[0], "Adam: {losses:?}");

    let mut model = dev.build_module::<Tiny, f32>();
    let conv_before = model.0 .0.weight.as_vec();
    let mut sgd = Sgd::new(
        &model,
        SgdConfig {
            lr: 0.05,
            momentum: Some(Momentum::Classic(0.9)),
            weight_decay: Some(WeightDecay::L2(1e-3)),
        },
    );
    let losses = train_tiny(&dev, &mut model, &mut sgd, 30);
    assert!(losses[29] < 0.5 * losses[0], "Momentum: {losses:?}");
    assert_ne!(
        model.0 .0.weight.as_vec(),
        conv_before,
        "the convolution's weight must be trained"
    );
}

#[test]
fn zero_grads_clears_convolution_gradients() {
    let dev = Cpu::seed_from_u64(5);
    let model = dev.build_module::<Tiny, f32>();
    let mut grads = model.alloc_grads();
    let loss = model
        .forward(dev.sample_normal::<Rank4<2, 1, 6, 6>>().traced(grads))
        .square()
        .mean();
    grads = loss.backward();
    let g = grads.get(&model.0 .0.weight).as_vec();
    assert!(g.iter().any(|v| *v != 0.0));
    model.zero_grads(&mut grads);
    assert!(grads.get(&model.0 .0.weight).as_vec().iter().all(|v| *v == 0.0));
}

#[test]
fn safetensors_round_trip_uses_the_course_layer_names() {
    let dev = Cpu::seed_from_u64(9);
    let model = dev.build_module::<LeNetMnist, f32>();
    let dir = std::env::temp_dir().join(format!("palm-cnn-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lenet.safetensors");
    model.save_safetensors(&path).unwrap();

    let bytes = std::fs::read(&path).unwrap();
    let file = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<(String, Vec<usize>)> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("conv1.bias".to_string(), vec![6]),
            ("conv1.weight".to_string(), vec![6, 1, 5, 5]),
            ("conv2.bias".to_string(), vec![16]),
            ("conv2.weight".to_string(), vec![16, 6, 5, 5]),
            ("conv3.bias".to_string(), vec![120]),
            ("conv3.weight".to_string(), vec![120, 16, 4, 4]),
            ("fc1.bias".to_string(), vec![64]),
            ("fc1.weight".to_string(), vec![64, 120]),
            ("fc2.bias".to_string(), vec![10]),
            ("fc2.weight".to_string(), vec![10, 64]),
        ]
    );

    let mut loaded = Cpu::seed_from_u64(10).build_module::<LeNetMnist, f32>();
    assert_ne!(loaded.conv2.weight.as_vec(), model.conv2.weight.as_vec());
    loaded.load_safetensors(&path).unwrap();
    let x = dev.sample_normal::<Rank4<2, 1, 28, 28>>();
    assert_eq!(loaded.forward(x.clone()).as_vec(), model.forward(x).as_vec());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dropout_is_active_in_training_and_off_in_evaluation() {
    let dev = Cpu::seed_from_u64(2);
    let mut model = dev.build_module::<AlexNet, f32>();
    let x = dev.sample_normal::<Rank4<1, 3, 224, 224>>();
    let eval_a = model.forward(x.clone()).as_vec();
    let eval_b = model.forward(x.clone()).as_vec();
    assert_eq!(eval_a, eval_b, "evaluation is deterministic");
    let train = model.forward_mut(x.traced(model.alloc_grads())).as_vec();
    assert_ne!(train, eval_a, "training applies dropout");
}
