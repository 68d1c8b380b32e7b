//! Grad-CAM against hand-computed maps on a tiny network, its probe's gradient against finite
//! differences, evaluation mode while probing, and the helpers (resizing, lesion share).

use dfdx::nn::modules::{Linear, ReLU};
use dfdx::prelude::*;
use palm_cnn::explain::{grad_cam, lesion_share, CamMap, Explain};
use palm_cnn::models::ModelKind;
use palm_cnn::network::Network;
use palm_cnn::nn::{BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool, Identity, MaxPool2d};
use rand::{rngs::StdRng, Rng, SeedableRng};

palm_cnn::network! {
    /// 1×3×3 → one logit: a 1×1 convolution to two channels, ReLU, global average, linear.
    struct Tiny: [1, 3, 3] -> [1], cam_layer = act1 {
        conv1: Conv2d<1, 2, 1, 1, 0, 3, 3, E, D>,
        act1: ReLU,
        pool: GlobalAvgPool,
        fc: Linear<2, 1, E, D>,
    }
}

/// The tiny network with weights chosen by hand: channel 0 is `x`, channel 1 is `0.5 − x`, and
/// the logit is `2·mean(A₀) − mean(A₁) + 0.25`.
fn tiny() -> Tiny {
    let dev = Cpu::default();
    let mut net = dev.build_module::<Tiny, f32>();
    net.conv1.weight = dev.tensor_from_vec(vec![1.0, -1.0], (Const::<2>, Const::<1>, Const::<1>, Const::<1>));
    net.conv1.bias = dev.tensor([0.0, 0.5]);
    net.fc.weight = dev.tensor([[2.0, -1.0]]);
    net.fc.bias = dev.tensor([0.25]);
    net
}

const TINY_INPUT: [f32; 9] = [1.0, -2.0, 3.0, 0.0, 2.0, -1.0, 4.0, 1.0, -3.0];

#[test]
fn grad_cam_of_a_tiny_network_matches_the_hand_computed_map() {
    // A₀ = ReLU(x)       = [1, 0, 3, 0, 2, 0, 4, 1, 0]
    // A₁ = ReLU(0.5 − x) = [0, 2.5, 0, 0.5, 0, 1.5, 0, 0, 3.5]
    // ∂y/∂A_c = v_c / 9, so α = [2/9, −1/9], and the map is ReLU(2A₀ − A₁)/9:
    let expected = [2.0, 0.0, 6.0, 0.0, 4.0, 0.0, 8.0, 2.0, 0.0].map(|v: f32| v / 9.0);
    let (logits, probed) = tiny().probe_layer(&TINY_INPUT, "act1", &[0]).unwrap();
    // y = 2·(11/9) − (8/9) + 0.25
    assert!((logits[0] - (14.0 / 9.0 + 0.25)).abs() < 1e-6, "logit {}", logits[0]);
    assert_eq!(probed.shape, vec![1, 2, 3, 3]);
    for (g, e) in probed
        .grad
        .iter()
        .zip([2.0f32 / 9.0; 9].iter().chain(&[-1.0f32 / 9.0; 9]))
    {
        assert!((g - e).abs() < 1e-7, "gradient {g}, expected {e}");
    }
    let maps = grad_cam(&probed).unwrap();
    assert_eq!(maps.len(), 1);
    assert_eq!((maps[0].height, maps[0].width), (3, 3));
    for (v, e) in maps[0].values.iter().zip(expected) {
        assert!((v - e).abs() < 1e-6, "map {:?}, expected {expected:?}", maps[0].values);
    }
}

#[test]
fn grad_cam_maps_each_sample_of_a_batch_on_its_own() {
    let mut two = TINY_INPUT.to_vec();
    two.extend(TINY_INPUT.map(|v| -v));
    let (_, probed) = tiny().probe_layer(&two, "act1", &[0, 0]).unwrap();
    let maps = grad_cam(&probed).unwrap();
    let (_, first) = tiny().probe_layer(&TINY_INPUT, "act1", &[0]).unwrap();
    assert_eq!(maps[0], grad_cam(&first).unwrap()[0]);
    // −x: A₀ = ReLU(−x) = [0,2,0,0,0,1,0,0,3], A₁ = ReLU(0.5 + x) = [1.5,0,3.5,0.5,2.5,0,4.5,1.5,0];
    // 2A₀ − A₁ = [−1.5, 4, −3.5, −0.5, −2.5, 2, −4.5, −1.5, 6].
    let expected = [0.0, 4.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 6.0].map(|v: f32| v / 9.0);
    for (v, e) in maps[1].values.iter().zip(expected) {
        assert!((v - e).abs() < 1e-6, "second map {:?}", maps[1].values);
    }
}

#[test]
fn probing_rejects_unknown_layers_and_bad_targets() {
    let err = tiny().probe_layer(&TINY_INPUT, "conv9", &[0]).unwrap_err().to_string();
    assert!(
        err.contains("no layer `conv9`") && err.contains("conv1, act1, pool, fc"),
        "{err}"
    );
    assert!(tiny().probe_layer(&TINY_INPUT, "act1", &[1]).is_err());
    assert!(tiny().probe_layer(&TINY_INPUT[..8], "act1", &[0]).is_err());
    // The pooled output is not a stack of maps.
    let (_, probed) = tiny().probe_layer(&TINY_INPUT, "pool", &[0]).unwrap();
    assert!(grad_cam(&probed)
        .unwrap_err()
        .to_string()
        .contains("[batch, channels, height, width]"));
    assert_eq!(tiny().cam_layer(), Some("act1"));
}

palm_cnn::network! {
    /// 2×6×6 → one logit, with dropout and batch normalisation, probed at its input.
    struct Mixed: [2, 6, 6] -> [1], cam_layer = input {
        input: Identity,
        conv1: Conv2d<2, 3, 3, 1, 1, 6, 6, E, D>,
        bn1: BatchNorm2d<3, E, D>,
        act1: ReLU,
        pool1: MaxPool2d<2, 2, 3, 3>,
        flatten: Flatten<27>,
        drop: Dropout,
        fc: Linear<27, 1, E, D>,
    }
}

fn mixed() -> Mixed {
    let dev: Cpu = Cpu::seed_from_u64(3);
    let mut net = dev.build_module::<Mixed, f32>();
    net.bn1.running_mean = dev.tensor([0.2, -0.1, 0.05]);
    net.bn1.running_var = dev.tensor([1.5, 0.7, 2.0]);
    net.bn1.weight = dev.tensor([1.2, 0.8, -0.5]);
    net.bn1.bias = dev.tensor([0.1, 0.0, -0.2]);
    net
}

#[test]
fn the_probe_sees_the_gradient_finite_differences_give_in_evaluation_mode() {
    let net = mixed();
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(5);
    let x: Vec<f32> = (0..72).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let forward = |v: &[f32]| -> f32 {
        net.forward(dev.tensor_from_vec(v.to_vec(), (1usize, Const::<2>, Const::<6>, Const::<6>)))
            .as_vec()[0]
    };
    let (logits, probed) = net.probe_layer(&x, "input", &[0]).unwrap();
    // Probing evaluates: dropout off, batch normalisation on its running statistics.
    assert_eq!(logits[0], forward(&x));
    assert_eq!(probed.values, x);
    let eps = 1e-3f32;
    for i in 0..x.len() {
        let (mut up, mut down) = (x.clone(), x.clone());
        up[i] += eps;
        down[i] -= eps;
        let numeric = (forward(&up) - forward(&down)) / (2.0 * eps);
        assert!(
            (probed.grad[i] - numeric).abs() <= 2e-3 * (1.0 + numeric.abs()),
            "input {i}: probe {} vs finite differences {numeric}",
            probed.grad[i]
        );
    }
}

#[test]
fn resizing_a_map_interpolates_between_pixel_centres() {
    let map = CamMap {
        height: 2,
        width: 2,
        values: vec![0.0, 1.0, 2.0, 3.0],
    };
    // Output pixel centres at 0.25, 0.75, 1.25, 1.75 of the source's 2 pixels map to source
    // coordinates -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
    let up = map.resized(4, 4);
    let row = |y: usize| up[y * 4..y * 4 + 4].to_vec();
    assert_eq!(row(0), vec![0.0, 0.25, 0.75, 1.0]);
    assert_eq!(row(1), vec![0.5, 0.75, 1.25, 1.5]);
    assert_eq!(row(3), vec![2.0, 2.25, 2.75, 3.0]);
    assert_eq!(map.resized(2, 2), map.values);
}

#[test]
fn lesion_share_is_the_maps_mass_on_the_mask() {
    let cam = [0.0, 1.0, 3.0, 0.0];
    let mask = [false, true, false, false];
    assert_eq!(lesion_share(&cam, &mask), Some((0.25, 0.25)));
    assert_eq!(lesion_share(&[0.0; 4], &mask), None);
    assert_eq!(lesion_share(&cam, &[false; 4]), None);
}

#[test]
fn every_fundus_model_maps_its_last_convolutional_stage() {
    let expected = [
        (ModelKind::LeNetPalm, "act3", 50),
        (ModelKind::AlexNet, "act5", 14),
        (ModelKind::ResNet50, "bb_3_2", 7),
    ];
    let mut rng = StdRng::seed_from_u64(9);
    let inputs: Vec<f32> = (0..2 * 3 * 224 * 224).map(|_| rng.gen_range(-1.0..1.0)).collect();
    for (kind, layer, side) in expected {
        let net = Network::new(kind, 1);
        let out = net.grad_cam(&inputs, None).unwrap();
        assert_eq!(out.len(), 2);
        let scores = net.predict(&inputs).unwrap().scores;
        for (e, s) in out.iter().zip(scores) {
            assert_eq!(e.layer, layer, "{kind}");
            assert_eq!((e.cam.height, e.cam.width), (side, side), "{kind}");
            assert_eq!(e.score, s, "{kind}");
            assert!(e.cam.values.iter().all(|v| *v >= 0.0 && v.is_finite()), "{kind}");
        }
    }
    let digits = Network::new(ModelKind::LeNetMnist, 1);
    assert!(digits.grad_cam(&inputs[..784], None).is_err());
    let out = digits.grad_cam(&inputs[..784], Some("act2")).unwrap();
    assert_eq!((out[0].cam.height, out[0].cam.width), (8, 8));
}

/// The synthetic set's lesion masks mark what the generator drew: every pathologic validation
/// photo has one, no other photo does, the pixels under it are paler than the rest of the
/// band around them (atrophy bares the sclera), and the PNGs `data synth --masks` writes read back as
/// the same masks.
#[test]
fn lesion_masks_mark_the_drawn_lesions_and_survive_png() {
    use palm_cnn::data::synth::{generate_with, LesionMasks, MASKS_DIR};
    let tmp = tempfile::tempdir().unwrap();
    let opts = palm_cnn::data::SynthOptions {
        size: Some((256, 248)),
        ..Default::default()
    };
    generate_with(tmp.path(), &opts).unwrap();
    let rendered = LesionMasks::new(&opts);
    assert_eq!(rendered.write_pngs(&tmp.path().join(MASKS_DIR)).unwrap(), 211);
    let from_png = LesionMasks::for_data_dir(tmp.path()).unwrap();

    let ds = palm_cnn::data::open(tmp.path()).unwrap();
    let (mut positives, mut paler) = (0, 0);
    for s in &ds.valid.samples {
        let mask = rendered.mask(&s.name, 256, 248).unwrap().unwrap();
        let area = mask.iter().filter(|&&m| m).count() as f64 / mask.len() as f64;
        if s.label == 0 {
            assert_eq!(area, 0.0, "{} is not pathologic but has a lesion mask", s.name);
            assert_eq!(from_png.mask(&s.name, 224, 224).unwrap(), None);
            continue;
        }
        positives += 1;
        assert!(area > 0.002, "{}: lesion area {area}", s.name);
        let a = rendered.mask(&s.name, 224, 224).unwrap().unwrap();
        let b = from_png.mask(&s.name, 224, 224).unwrap().unwrap();
        let agree = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64;
        assert!(agree > 0.98, "{}: PNG mask agrees on {agree}", s.name);

        let path = s.source.display_path();
        let bytes = std::fs::read(&path).unwrap();
        let img = palm_cnn::data::image::decode(&bytes, &path, Default::default(), None).unwrap();
        let contrast = |mask: &[bool]| {
            // The band just outside the mask: the fundus the lesion replaced, lit alike.
            let band = dilate(mask, 256, 248, 4);
            let (mut inside, mut outside) = ((0.0, 0usize), (0.0, 0usize));
            for ((px, &m), &near) in img.data.chunks_exact(3).zip(mask).zip(&band) {
                let luma = px.iter().map(|&v| v as f64).sum::<f64>() / 3.0;
                if m {
                    inside = (inside.0 + luma, inside.1 + 1);
                } else if near {
                    outside = (outside.0 + luma, outside.1 + 1);
                }
            }
            inside.0 / inside.1 as f64 - outside.0 / outside.1 as f64
        };
        if contrast(&mask) > 10.0 {
            paler += 1;
        }
    }
    assert_eq!(positives, 211);
    // 206 of 211 here; the same masks mirrored left-right give 191, shifted down by 40 rows 160.
    assert!(
        paler as f64 >= 0.95 * positives as f64,
        "only {paler} of {positives} masks lie on paler pixels"
    );
}

/// `mask` grown by `r` pixels (a square neighbourhood), rows of `width`.
fn dilate(mask: &[bool], width: usize, height: usize, r: usize) -> Vec<bool> {
    let mut rows = vec![false; mask.len()];
    for y in 0..height {
        for x in 0..width {
            rows[y * width + x] = (x.saturating_sub(r)..(x + r + 1).min(width)).any(|i| mask[y * width + i]);
        }
    }
    let mut out = vec![false; mask.len()];
    for y in 0..height {
        for x in 0..width {
            out[y * width + x] = (y.saturating_sub(r)..(y + r + 1).min(height)).any(|j| rows[j * width + x]);
        }
    }
    out
}
