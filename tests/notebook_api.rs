//! The non-generic API the notebooks stand on: `Network` (against the generic model it wraps),
//! layer profiles (against hand-computed statistics and the plain forward pass), image grids
//! (pixels where the layout puts them), tiles (hand-computed bytes) and quick mode.

use dfdx::prelude::*;
use palm_cnn::data::{mnist, ChannelOrder};
use palm_cnn::experiment::Experiment;
use palm_cnn::models::{LeNetMnist, ModelKind};
use palm_cnn::network::{Datasets, Network};
use palm_cnn::notebook;
use palm_cnn::plot::{self, Tile};
use palm_cnn::summary::ValueStats;
use palm_cnn::train::{self, History, TrainConfig};

fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(bytes);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn value_stats_match_hand_computed_values() {
    let s = ValueStats::of(&[1.0, 2.0, 3.0, 6.0]).unwrap();
    assert_eq!((s.min, s.max), (1.0, 6.0));
    assert!((s.mean - 3.0).abs() < 1e-7);
    // population variance: (4 + 1 + 0 + 9) / 4 = 3.5
    assert!((s.std - 3.5f32.sqrt()).abs() < 1e-6);
    assert_eq!(ValueStats::of(&[]), None);
}

#[test]
fn profile_records_each_layer_and_ends_in_the_forward_logits() {
    let net = Network::new(ModelKind::LeNetMnist, 3);
    let digits = mnist::Mnist::builtin().unwrap();
    let inputs = notebook::mnist_inputs(&digits, &[0, 1, 2, 3]).unwrap();
    let profile = net.profile(&inputs).unwrap();
    assert!(profile.profiled);
    assert_eq!(profile.rows.len(), 12);
    assert_eq!(profile.input_shape, vec![4, 1, 28, 28]);
    for row in profile.rows.iter().filter(|r| r.kind == "Sigmoid") {
        let s = row.stats.unwrap();
        assert!(s.min > 0.0 && s.max < 1.0, "{}: {s:?}", row.name);
    }
    let logits = net.logits(&inputs).unwrap();
    assert_eq!(profile.rows.last().unwrap().stats, ValueStats::of(&logits));
    let text = profile.to_string();
    assert!(text.contains("mean") && text.contains("act4"), "{text}");
    assert!(profile.to_html().contains("<th>std</th>"));
    // A plain summary has no statistics columns.
    assert!(!net.summary(2).to_html().contains("<th>std</th>"));
    let err = net.profile(&inputs[..100]).unwrap_err().to_string();
    assert!(err.contains("not a whole number"), "{err}");
}

#[test]
fn network_matches_the_generic_model_it_wraps() {
    // Same seed, same initialisation as building the model directly and redrawing it with the
    // course's scheme.
    let net = Network::new(ModelKind::LeNetMnist, 11);
    let dev = Cpu::seed_from_u64(11);
    let mut direct = dev.build_module::<LeNetMnist, f32>();
    palm_cnn::nn::reinit(&mut direct, palm_cnn::nn::Init::Paddle, 11);
    let digits = mnist::Mnist::builtin().unwrap();
    let inputs = notebook::mnist_inputs(&digits, &[5, 6, 7]).unwrap();
    let x = dev.tensor_from_vec(inputs.clone(), (3, Const::<1>, Const::<28>, Const::<28>));
    let expected = direct.forward(x).as_vec();
    assert_eq!(net.logits(&inputs).unwrap(), expected);
    assert_eq!(net.num_params(), 41_806);
    assert_eq!(net.kind(), ModelKind::LeNetMnist);

    let p = net.predict(&inputs).unwrap();
    for (k, row) in expected.chunks(10).enumerate() {
        let best = (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        assert_eq!(p.classes[k] as usize, best);
        let z: f32 = row.iter().map(|&v| (v - row[best]).exp()).sum();
        assert!((p.scores[k] - 1.0 / z).abs() < 1e-6);
    }
    assert!(net.logits(&inputs[..10]).is_err());
}

#[test]
fn network_training_equals_the_generic_training_loop() {
    let cfg = TrainConfig {
        epochs: 1,
        verbose: false,
        log_every: 0,
        ..TrainConfig::course(ModelKind::LeNetMnist)
    };
    let data = Datasets::mnist(Some(40)).unwrap();

    let mut net = Network::new(ModelKind::LeNetMnist, cfg.seed);
    let mut via_network = History::new("lenet-mnist", &cfg);
    let mut epochs_seen = 0;
    net.train(&data, &cfg, &mut via_network, None, |h| {
        epochs_seen = h.epochs.len();
        Ok(())
    })
    .unwrap();
    assert_eq!(epochs_seen, 1);

    let dev = Cpu::seed_from_u64(cfg.seed);
    let mut model = dev.build_module::<LeNetMnist, f32>();
    palm_cnn::nn::reinit(&mut model, cfg.init, cfg.seed);
    let (tr, va) = match &data {
        Datasets::Mnist { train, valid } => (train.clone(), valid.clone()),
        Datasets::Palm { .. } => unreachable!(),
    };
    let mut direct = History::new("lenet-mnist", &cfg);
    train::train(&mut model, &dev, &tr, &va, &cfg, &mut direct, |_, _| Ok(())).unwrap();

    assert_eq!(via_network.batches, direct.batches);
    assert_eq!(via_network.epochs[0].val_loss, direct.epochs[0].val_loss);
    let ev = net.evaluate(&data, 7).unwrap();
    let direct_ev = train::evaluate(&model, &dev, &va, 7).unwrap();
    assert_eq!(ev.scores, direct_ev.scores);
}

#[test]
fn checkpoints_round_trip_through_network() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("lenet.safetensors");
    let net = Network::new(ModelKind::LeNetMnist, 5);
    net.save(&path).unwrap();
    let back = Network::load(&path).unwrap();
    assert_eq!(back.kind(), ModelKind::LeNetMnist);
    let digits = mnist::Mnist::builtin().unwrap();
    let inputs = notebook::mnist_inputs(&digits, &[0, 9]).unwrap();
    assert_eq!(back.logits(&inputs).unwrap(), net.logits(&inputs).unwrap());

    let mut palm = Network::new(ModelKind::LeNetPalm, 0);
    let err = format!("{:#}", palm.load_weights(&path).unwrap_err());
    assert!(err.contains("lenet.safetensors"), "{err}");
    let err = format!("{:#}", net.predict_files(std::slice::from_ref(&path)).unwrap_err());
    assert!(err.contains("fundus model"), "{err}");
    let err = format!(
        "{:#}",
        Network::load(&tmp.path().join("missing.safetensors")).err().unwrap()
    );
    assert!(err.contains("missing.safetensors"), "{err}");
}

#[test]
fn data_of_the_wrong_kind_is_an_error_not_a_panic() {
    let digits = Datasets::mnist(Some(10)).unwrap();
    let palm = Network::new(ModelKind::LeNetPalm, 0);
    let err = palm.evaluate(&digits, 5).unwrap_err().to_string();
    assert!(err.contains("MNIST"), "{err}");
    assert!(digits.valid_samples().is_empty());
}

/// LeNet-MNIST with Adam on a 30-digit subset, quietly, into `out`.
fn tiny_digits_experiment(epochs: usize, out: &std::path::Path) -> Experiment {
    let mut exp = Experiment::course(ModelKind::LeNetMnist);
    exp.limit = Some(30);
    exp.config.epochs = epochs;
    exp.config.verbose = false;
    exp.config.optimizer = train::OptimizerKind::Adam;
    exp.out = out.to_path_buf();
    exp
}

#[test]
fn experiment_writes_its_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_digits_experiment(2, &tmp.path().join("run"));
    let outcome = exp.run().unwrap();
    assert_eq!(outcome.history.epochs.len(), 2);
    assert_eq!(outcome.history.batches.len(), 2 * 3);
    assert_eq!(outcome.checkpoint, exp.out.join("model.safetensors"));
    // The final evaluation is the last epoch's validation, from the saved checkpoint too.
    let last = outcome.history.epochs.last().unwrap();
    assert_eq!(outcome.evaluation.loss, last.val_loss);
    let reloaded = Network::load(&outcome.checkpoint).unwrap();
    let data = exp.load_data().unwrap();
    assert_eq!(reloaded.evaluate(&data, 10).unwrap().scores, outcome.evaluation.scores);
    for name in ["metrics.csv", "metrics.json", "loss.png", "loss.svg", "metrics.png"] {
        assert!(exp.out.join(name).is_file(), "{name} missing");
    }
    // MNIST has no confusion matrix or ROC curve.
    assert!(!exp.out.join("roc.png").exists());
}

#[test]
fn a_finished_run_is_reused_only_by_the_same_experiment() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_digits_experiment(1, &tmp.path().join("run"));
    let data = exp.load_data().unwrap();
    assert!(exp.finished_run().unwrap().is_none());
    let trained = exp.run_or_reuse(&data).unwrap();
    assert!(!trained.reused);
    assert!(exp.out.join(palm_cnn::experiment::RUN_KEY_FILE).is_file());

    // The same experiment, console settings aside: loaded, not trained, and it scores the
    // validation images exactly as the run that trained it.
    let mut same = exp.clone();
    same.config.verbose = true;
    same.config.log_every = 1;
    let reused = same.run_or_reuse(&data).unwrap();
    assert!(reused.reused);
    assert_eq!(reused.history, trained.history);
    assert_eq!(reused.evaluation.scores, trained.evaluation.scores);
    assert!(
        reused.plots.iter().any(|p| p.ends_with("loss.png")),
        "{:?}",
        reused.plots
    );

    // Another seed, another learning rate or another subset is another run.
    for change in [
        |e: &mut Experiment| e.config.seed += 1,
        |e: &mut Experiment| e.config.lr *= 2.0,
        |e: &mut Experiment| e.limit = Some(20),
        |e: &mut Experiment| e.config.epochs = 2,
    ] {
        let mut other = exp.clone();
        change(&mut other);
        assert!(other.finished_run().unwrap().is_none(), "{other:?}");
    }
    // Training again in the folder replaces the key with the new run's.
    let mut other = exp.clone();
    other.config.seed += 1;
    assert!(!other.run_or_reuse(&data).unwrap().reused);
    assert!(exp.finished_run().unwrap().is_none());
    assert!(other.finished_run().unwrap().is_some());
}

#[test]
fn chw_tiles_undo_the_course_scaling_in_either_channel_order() {
    // 3×2×2 planes: channel 0 = -1 (byte 0), channel 1 = 0 (127.5 → 128), channel 2 = 1 (255).
    let mut chw = vec![-1.0f32; 4];
    chw.extend([0.0f32; 4]);
    chw.extend([1.0f32; 4]);
    let bgr = Tile::from_chw(&chw, 3, 2, ChannelOrder::Bgr, 1, "x").unwrap();
    assert_eq!(&bgr.rgb[..3], &[255, 128, 0]);
    let rgb = Tile::from_chw(&chw, 3, 2, ChannelOrder::Rgb, 2, "x").unwrap();
    assert_eq!((rgb.width, rgb.height), (4, 4));
    assert_eq!(&rgb.rgb[..3], &[0, 128, 255]);
    assert!(Tile::from_chw(&chw, 3, 3, ChannelOrder::Rgb, 1, "x").is_err());
    let small = Tile::from_rgb(&[7u8; 40 * 20 * 3], 40, 20, 10, "x").unwrap();
    assert_eq!((small.width, small.height), (10, 5));
    assert!(small.rgb.iter().all(|&b| b == 7));
}

#[test]
fn image_grid_places_each_tile_in_its_cell() {
    let solid = |c: [u8; 3], caption: &str| Tile {
        width: 64,
        height: 64,
        rgb: c.iter().copied().cycle().take(64 * 64 * 3).collect(),
        caption: caption.into(),
    };
    let tiles = [
        solid([255, 0, 0], "red"),
        solid([0, 255, 0], "green"),
        solid([0, 0, 255], "blue"),
    ];
    let fig = plot::image_grid("three", &tiles, 2).unwrap();
    // 2 columns of 64 px cells with 10 px gaps; 2 rows of 64 + 26 caption px under a 40 px title.
    assert_eq!(fig.size(), (10 + 2 * 74, 40 + 2 * (90 + 10)));
    let (w, h, px) = decode_png(&fig.to_png().unwrap());
    assert_eq!((w, h), fig.size());
    let at = |x: usize, y: usize| &px[(y * w as usize + x) * 3..][..3];
    assert_eq!(at(10 + 32, 40 + 32), &[255, 0, 0]);
    assert_eq!(at(10 + 74 + 32, 40 + 32), &[0, 255, 0]);
    assert_eq!(at(10 + 32, 40 + 100 + 32), &[0, 0, 255]);
    // The empty fourth cell stays white, and a caption put dark pixels under the first tile.
    assert_eq!(at(10 + 74 + 32, 40 + 100 + 32), &[255, 255, 255]);
    let caption_dark = (10..74).any(|x| (40 + 64..40 + 90).any(|y| at(x, y)[0] < 128));
    assert!(caption_dark);
    assert!(fig.to_svg().contains("data:image/png;base64,"));
    assert!(plot::image_grid("none", &[], 2).is_err());
}

#[test]
fn digit_grid_shows_the_digits_pixels() {
    let digits = mnist::Mnist::builtin().unwrap();
    let fig = notebook::digit_grid("d", &digits, &[0], &["0".into()], 1).unwrap();
    let (w, _, px) = decode_png(&fig.to_png().unwrap());
    // One 84 px tile, centred in a cell widened to 60 px minimum (84 > 60, so no offset).
    let img = digits.image(0);
    for (y, x) in [(0usize, 0usize), (14, 14), (20, 9)] {
        let expected = img[y * 28 + x];
        let got = px[((40 + y * 3 + 1) * w as usize + 10 + x * 3 + 1) * 3];
        assert!(
            (got as i32 - expected as i32).abs() <= 1,
            "({y},{x}): {got} vs {expected}"
        );
    }
    assert!(notebook::digit_grid("d", &digits, &[0, 1], &["0".into()], 1).is_err());
}

#[test]
fn quick_mode_follows_the_environment_variable() {
    // One test touches the variable, so no other test races with it.
    std::env::set_var(notebook::QUICK_ENV, "1");
    assert!(notebook::quick());
    assert_eq!(notebook::pick(5, 2), 2);
    std::env::set_var(notebook::QUICK_ENV, "0");
    assert!(!notebook::quick());
    std::env::remove_var(notebook::QUICK_ENV);
    assert_eq!(notebook::pick(5, 2), 5);
}
