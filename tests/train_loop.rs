//! The training loop on tiny random sets with LeNet-MNIST: determinism, the validation pass,
//! the non-finite-loss stop.

use dfdx::prelude::*;
use palm_cnn::checkpoint;
use palm_cnn::models::{LeNetMnist, ModelKind};
use palm_cnn::train::{
    self, Batch, BatchIter, BatchSource, History, InMemory, NonFiniteLoss, OptimizerKind, TrainConfig,
};

type Shape = (usize, Const<1>, Const<28>, Const<28>);

fn config(seed: u64, optimizer: OptimizerKind) -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch_size: 8,
        seed,
        optimizer,
        verbose: false,
        ..TrainConfig::course(ModelKind::LeNetMnist)
    }
}

fn run(seed: u64, optimizer: OptimizerKind) -> History {
    let tr = InMemory::<Shape, 10>::random(40, 1);
    let va = InMemory::<Shape, 10>::random(12, 2);
    let cfg = config(seed, optimizer);
    let dev = Cpu::seed_from_u64(cfg.seed);
    let mut model = dev.build_module::<LeNetMnist, f32>();
    let mut h = History::new("lenet-mnist", &cfg);
    let mut calls = 0;
    train::train(&mut model, &dev, &tr, &va, &cfg, &mut h, |_, _| {
        calls += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(calls, 2);
    h
}

#[test]
fn same_seed_same_losses_other_seed_other_losses() {
    for opt in [OptimizerKind::Momentum, OptimizerKind::Adam] {
        let a = run(7, opt);
        let b = run(7, opt);
        assert_eq!(a.batches.len(), 10); // 2 epochs × ceil(40 / 8)
        let la: Vec<f32> = a.batches.iter().map(|b| b.loss).collect();
        let lb: Vec<f32> = b.batches.iter().map(|b| b.loss).collect();
        assert_eq!(la, lb, "{opt:?}");
        assert_eq!(
            a.epochs,
            b.epochs
                .iter()
                .map(|e| train::EpochRecord {
                    train_seconds: a.epochs[e.epoch].train_seconds,
                    train_images_per_s: a.epochs[e.epoch].train_images_per_s,
                    ..e.clone()
                })
                .collect::<Vec<_>>()
        );
        let c = run(8, opt);
        let lc: Vec<f32> = c.batches.iter().map(|b| b.loss).collect();
        assert_ne!(la, lc, "{opt:?}");
    }
}

#[test]
fn losses_are_softmax_cross_entropy_and_validation_matches_evaluate() {
    let h = run(3, OptimizerKind::Adam);
    // 10 classes, fresh model: the first loss is near ln 10.
    assert!((h.batches[0].loss - 10f32.ln()).abs() < 0.5, "{}", h.batches[0].loss);
    // Train loss per epoch is the sample-weighted mean of its batches (8, 8, 8, 8, 8).
    let mean: f64 = h.batches[..5].iter().map(|b| b.loss as f64).sum::<f64>() / 5.0;
    assert!((h.epochs[0].train_loss - mean).abs() < 1e-6);
    assert!(h.epochs[0].val_auc.is_none() && h.epochs[0].val_confusion.is_none());
}

#[test]
fn evaluate_one_logit_metrics_agree_with_hand_counts() {
    // A model whose logit is the mean of its input: feed constant images.
    palm_cnn::network! {
        /// Mean of 4 inputs.
        pub struct Mean: [1, 2, 2] -> [1] {
            flatten: palm_cnn::nn::Flatten<4>,
            fc: dfdx::nn::modules::Linear<4, 1, E, D>,
        }
    }
    let dev = Cpu::default();
    let mut m = dev.build_module::<Mean, f32>();
    m.fc.weight = dev.tensor([[0.25f32; 4]]);
    m.fc.bias = dev.tensor([0.0f32]);
    // logits 2, -1, 0.5, -3, 1 ; labels 1, 1, 0, 0, 1
    let vals = [2.0f32, -1.0, 0.5, -3.0, 1.0];
    let images = vals.iter().flat_map(|&v| [v; 4]).collect();
    let set = InMemory::<(usize, Const<1>, Const<2>, Const<2>), 1>::new(images, vec![1, 1, 0, 0, 1]).unwrap();
    let ev = train::evaluate(&m, &dev, &set, 2).unwrap();
    // predicted (p >= .5 ⇔ logit >= 0): 1 0 1 0 1 → tp 2, fn 1, fp 1, tn 1
    assert_eq!(ev.predictions, vec![1, 0, 1, 0, 1]);
    assert!((ev.accuracy - 0.6).abs() < 1e-12);
    assert_eq!(ev.sensitivity, Some(2.0 / 3.0));
    assert_eq!(ev.specificity, Some(0.5));
    // AUC: positives {2, -1, 1} vs negatives {0.5, -3}: 2>both, 1>both, -1>-3 → 5/6.
    assert!((ev.auc.unwrap() - 5.0 / 6.0).abs() < 1e-9);
    // BCE with logits by hand: mean of softplus(-z) for positives and softplus(z) for negatives.
    let sp = |x: f64| (1.0 + x.exp()).ln();
    let want = (sp(-2.0) + sp(1.0) + sp(0.5) + sp(-3.0) + sp(-1.0)) / 5.0;
    assert!((ev.loss - want).abs() < 1e-5, "{} vs {want}", ev.loss);
}

/// Random digits, with NaN images from epoch `bad_epoch` on.
struct Poisoned {
    inner: InMemory<Shape, 10>,
    bad_epoch: u64,
}

impl BatchSource<Shape, 10> for Poisoned {
    fn len(&self) -> usize {
        self.inner.labels.len()
    }
    fn batches<'a>(
        &'a self,
        dev: &'a Cpu,
        batch_size: usize,
        shuffle: Option<(u64, u64)>,
    ) -> anyhow::Result<BatchIter<'a, Shape, 10>> {
        let bad = matches!(shuffle, Some((_, e)) if e >= self.bad_epoch);
        let it = self.inner.batches(dev, batch_size, shuffle)?;
        Ok(Box::new(it.enumerate().map(move |(i, b)| {
            let b = b?;
            if bad && i == 2 {
                let n = b.targets.shape().0;
                let images = dev.tensor_from_vec(vec![f32::NAN; n * 784], (n, Const::<1>, Const::<28>, Const::<28>));
                return Ok(Batch {
                    images,
                    targets: b.targets,
                });
            }
            Ok(b)
        })))
    }
}

#[test]
fn nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("model.safetensors");
    let tr = Poisoned {
        inner: InMemory::random(40, 1),
        bad_epoch: 1,
    };
    let va = InMemory::<Shape, 10>::random(8, 2);
    let cfg = TrainConfig {
        epochs: 3,
        ..config(1, OptimizerKind::Adam)
    };
    let dev = Cpu::seed_from_u64(cfg.seed);
    let mut model = dev.build_module::<LeNetMnist, f32>();
    let mut h = History::new("lenet-mnist", &cfg);
    let mut saved = None;
    let err = train::train(&mut model, &dev, &tr, &va, &cfg, &mut h, |m, _| {
        checkpoint::save(m, ModelKind::LeNetMnist, &ck)?;
        saved = Some(m.fc2.weight.as_vec());
        Ok(())
    })
    .unwrap_err();
    let nf = err.downcast_ref::<NonFiniteLoss>().expect("a NonFiniteLoss");
    assert_eq!((nf.epoch, nf.batch), (1, 2));
    assert!(nf.loss.is_nan());
    assert!(err.to_string().contains("epoch 1, batch 2"), "{err}");
    assert_eq!(h.epochs.len(), 1);
    assert_eq!(h.batches.len(), 5 + 3);
    // The checkpoint on disk is the one of epoch 0.
    let mut back = Cpu::default().build_module::<LeNetMnist, f32>();
    checkpoint::load(&mut back, ModelKind::LeNetMnist, &ck).unwrap();
    assert_eq!(Some(back.fc2.weight.as_vec()), saved);
    // No NaN reached the weights: the step of the NaN batch was not taken.
    assert!(model.fc2.weight.as_vec().iter().all(|x| x.is_finite()));
}
