//! palm-cnn's in-place optimizers against dfdx 0.13's own, step by step, on the same model and
//! batches: the same parameters after every step, BatchNorm's running statistics untouched by the
//! optimizer, and the gradients zeroed by the update.

use dfdx::nn::builders::{BatchNorm1D, Linear};
use dfdx::optim::{Adam, AdamConfig, Momentum, Sgd, SgdConfig, WeightDecay};
use dfdx::prelude::*;
use palm_cnn::optim::Optimizer;

type Net = (Linear<6, 5>, BatchNorm1D<5>, ReLU, Linear<5, 1>);
type Built = <Net as BuildOnDevice<Cpu, f32>>::Built;

/// Every tensor of the model, trainable or not, in order.
fn tensors(m: &Built) -> Vec<Vec<f32>> {
    vec![
        m.0.weight.as_vec(),
        m.0.bias.as_vec(),
        m.1.scale.as_vec(),
        m.1.bias.as_vec(),
        m.1.running_mean.as_vec(),
        m.1.running_var.as_vec(),
        m.3.weight.as_vec(),
        m.3.bias.as_vec(),
    ]
}

fn loss(m: &mut Built, x: &Tensor<Rank2<7, 6>, f32, Cpu>, grads: Gradients<f32, Cpu>) -> Gradients<f32, Cpu> {
    let y = m.forward_mut(x.clone().traced(grads));
    (y.square().mean() + 0.5).backward()
}

/// Runs `steps` steps with dfdx's optimizer (`reference`) and ours (`ours`) from the same start.
fn compare(mut reference: impl dfdx::optim::Optimizer<Built, Cpu, f32>, mut ours: Optimizer, what: &str) {
    let dev = Cpu::seed_from_u64(5);
    let mut a = dev.build_module::<Net, f32>();
    let mut b = a.clone();
    let (mut ga, mut gb) = (a.alloc_grads(), b.alloc_grads());
    for step in 0..8 {
        let x: Tensor<Rank2<7, 6>, f32, Cpu> = dev.sample_normal();
        ga = loss(&mut a, &x, ga);
        gb = loss(&mut b, &x, gb);
        assert!(
            gb.get(&b.0.weight).as_vec().iter().any(|g| *g != 0.0),
            "{what}: a gradient to use"
        );
        reference.update(&mut a, &ga).expect("every parameter has a gradient");
        a.zero_grads(&mut ga);
        ours.update(&mut b, &mut gb).unwrap();
        for (i, (ta, tb)) in tensors(&a).iter().zip(tensors(&b)).enumerate() {
            for (va, vb) in ta.iter().zip(&tb) {
                assert!(
                    (va - vb).abs() <= 1e-6 * va.abs().max(1.0),
                    "{what}, step {step}, tensor {i}: dfdx {va} vs ours {vb}"
                );
            }
        }
        for g in [gb.get(&b.0.weight).as_vec(), gb.get(&b.3.weight).as_vec()] {
            assert!(g.iter().all(|v| *v == 0.0), "{what}: gradients zeroed");
        }
    }
    assert_ne!(tensors(&a)[0], dev.build_module::<Net, f32>().0.weight.as_vec());
}

#[test]
fn adam_matches_dfdx() {
    let dev = Cpu::default();
    let m = dev.build_module::<Net, f32>();
    let cfg = AdamConfig {
        lr: 1e-2,
        ..Default::default()
    };
    compare(Adam::new(&m, cfg), Optimizer::adam(1e-2, None), "Adam");
    let cfg = AdamConfig {
        lr: 1e-2,
        weight_decay: Some(WeightDecay::L2(0.05)),
        ..Default::default()
    };
    compare(Adam::new(&m, cfg), Optimizer::adam(1e-2, Some(0.05)), "Adam, L2 0.05");
}

#[test]
fn momentum_matches_dfdx() {
    let dev = Cpu::default();
    let m = dev.build_module::<Net, f32>();
    let cfg = |wd: Option<f64>| SgdConfig {
        lr: 5e-2,
        momentum: Some(Momentum::Classic(0.9)),
        weight_decay: wd.map(WeightDecay::L2),
    };
    compare(
        Sgd::new(&m, cfg(None)),
        Optimizer::momentum(5e-2, 0.9, None),
        "Momentum",
    );
    compare(
        Sgd::new(&m, cfg(Some(0.01))),
        Optimizer::momentum(5e-2, 0.9, Some(0.01)),
        "Momentum, L2 0.01",
    );
}

/// Pieces of 16,384 elements go to different threads: a 50 × 1000 weight (three pieces and a
/// short fourth) gets the same update as one element at a time.
#[test]
fn large_tensors_split_into_pieces_match_elementwise() {
    let dev = Cpu::seed_from_u64(9);
    let mut layer = dev.build_module::<Linear<1000, 50>, f32>();
    let start = layer.weight.as_vec();
    let mut grads = layer.alloc_grads();
    let n = start.len();
    let g_values: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-3).collect();
    grads
        .get_or_alloc_mut(&layer.weight)
        .unwrap()
        .copy_from_slice(&g_values);
    let mut opt = Optimizer::momentum(0.1, 0.9, Some(0.5));
    opt.update(&mut layer, &mut grads).unwrap();
    for (i, ((after, before), g)) in layer.weight.as_vec().iter().zip(&start).zip(&g_values).enumerate() {
        // First step: velocity = g + wd·p, p −= lr·velocity.
        let expected = before - 0.1 * (g + 0.5 * before);
        assert!((after - expected).abs() <= 1e-6, "element {i}: {after} vs {expected}");
    }
}
