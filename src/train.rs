//! The training loop of the course's `train_pm`, on dfdx: shuffled batches each epoch,
//! binary cross-entropy with logits on one logit (softmax cross-entropy for MNIST's 10
//! classes), backward, optimizer step, gradients zeroed; after each epoch a validation pass
//! without tape (dropout off) with loss, accuracy at p = 0.5 and, for one logit, AUC,
//! sensitivity, specificity and the confusion matrix.
//!
//! Data comes through the small [`BatchSource`] trait, implemented by [`InMemory`] (random
//! tensors, MNIST) and [`PalmSource`] (the data module's [`PalmLoader`]).
//!
//! Determinism: the model is initialised, batches are shuffled and dropout masks are drawn
//! from `seed` alone, so the same seed and data give the same loss sequence.

use crate::data::{self, PalmLoader};
use crate::metrics::{self, Confusion};
use crate::models::ModelKind;
use crate::nn::Init;
use crate::optim::Optimizer;
use dfdx::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// A batch shape `(usize, Const<A>, Const<B>, Const<C>)`: images with a runtime batch size.
pub trait BatchShape: Shape {
    /// Floats per sample.
    const SAMPLE_LEN: usize;
    /// The shape of a batch of `n` samples.
    fn with_batch(n: usize) -> Self;
}

impl<const A: usize, const B: usize, const C: usize> BatchShape for (usize, Const<A>, Const<B>, Const<C>) {
    const SAMPLE_LEN: usize = A * B * C;
    fn with_batch(n: usize) -> Self {
        (n, Const, Const, Const)
    }
}

/// One batch: images and targets, `(n, C)` (one logit: 0/1 labels; `C` classes: one-hot).
pub struct Batch<S: Shape, const C: usize> {
    /// Inputs.
    pub images: Tensor<S, f32, Cpu>,
    /// Targets: `(n, 1)` labels in {0, 1}, or `(n, C)` one-hot.
    pub targets: Tensor<(usize, Const<C>), f32, Cpu>,
}

/// An iterator of batches, as a [`BatchSource`] hands them out.
pub type BatchIter<'a, S, const C: usize> = Box<dyn Iterator<Item = anyhow::Result<Batch<S, C>>> + 'a>;

/// Where a trainer gets its batches from.
pub trait BatchSource<S: Shape, const C: usize> {
    /// Number of samples.
    fn len(&self) -> usize;
    /// True when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Batches of `batch_size` (the last one may be short) in the order of epoch `epoch`
    /// shuffled with `seed` when `shuffle` is `Some((seed, epoch))` (training), else in order
    /// (validation, no augmentation).
    fn batches<'a>(
        &'a self,
        dev: &'a Cpu,
        batch_size: usize,
        shuffle: Option<(u64, u64)>,
    ) -> anyhow::Result<BatchIter<'a, S, C>>;
}

/// Samples held in memory as floats, with class labels (`0`/`1` for one logit).
#[derive(Debug, Clone, PartialEq)]
pub struct InMemory<S: BatchShape, const C: usize> {
    /// `len * S::SAMPLE_LEN` floats.
    pub images: Vec<f32>,
    /// Class of each sample (`< C`, or 0/1 when `C == 1`).
    pub labels: Vec<usize>,
    _shape: std::marker::PhantomData<S>,
}

impl<S: BatchShape, const C: usize> InMemory<S, C> {
    /// Wraps images and labels.
    ///
    /// # Errors
    /// When the lengths do not fit or a label is out of range.
    pub fn new(images: Vec<f32>, labels: Vec<usize>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            images.len() == labels.len() * S::SAMPLE_LEN,
            "{} floats for {} samples of {}",
            images.len(),
            labels.len(),
            S::SAMPLE_LEN
        );
        let classes = C.max(2);
        if let Some(bad) = labels.iter().find(|&&l| l >= classes) {
            anyhow::bail!("label {bad} out of range 0..{classes}");
        }
        Ok(InMemory {
            images,
            labels,
            _shape: std::marker::PhantomData,
        })
    }

    /// Random images (uniform in [-1, 1]) with random labels, from `seed`.
    pub fn random(n: usize, seed: u64) -> Self {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let images = (0..n * S::SAMPLE_LEN).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let labels = (0..n).map(|_| rng.gen_range(0..C.max(2))).collect();
        InMemory {
            images,
            labels,
            _shape: std::marker::PhantomData,
        }
    }

    fn batch(&self, dev: &Cpu, idx: &[usize]) -> Batch<S, C> {
        let len = S::SAMPLE_LEN;
        let mut x = Vec::with_capacity(idx.len() * len);
        let mut t = vec![0f32; idx.len() * C];
        for (k, &i) in idx.iter().enumerate() {
            x.extend_from_slice(&self.images[i * len..(i + 1) * len]);
            if C == 1 {
                t[k] = self.labels[i] as f32;
            } else {
                t[k * C + self.labels[i]] = 1.0;
            }
        }
        Batch {
            images: dev.tensor_from_vec(x, S::with_batch(idx.len())),
            targets: dev.tensor_from_vec(t, (idx.len(), Const::<C>)),
        }
    }
}

impl InMemory<(usize, Const<1>, Const<28>, Const<28>), 10> {
    /// MNIST digits, scaled like the course ([-1, 1]).
    pub fn from_mnist(set: &data::mnist::Mnist) -> Self {
        let scale = data::mnist::MnistScale::MinusOneToOne;
        let images = set.images.iter().map(|&b| scale.apply(b)).collect();
        let labels = set.labels.iter().map(|&l| l as usize).collect();
        InMemory {
            images,
            labels,
            _shape: std::marker::PhantomData,
        }
    }
}

impl<S: BatchShape, const C: usize> BatchSource<S, C> for InMemory<S, C> {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn batches<'a>(
        &'a self,
        dev: &'a Cpu,
        batch_size: usize,
        shuffle: Option<(u64, u64)>,
    ) -> anyhow::Result<BatchIter<'a, S, C>> {
        anyhow::ensure!(batch_size > 0, "batch size must be at least 1");
        let order = match shuffle {
            Some((seed, epoch)) => data::epoch_order(self.len(), seed, epoch),
            None => (0..self.len()).collect(),
        };
        let chunks: Vec<Vec<usize>> = order.chunks(batch_size).map(|c| c.to_vec()).collect();
        Ok(Box::new(chunks.into_iter().map(move |idx| Ok(self.batch(dev, &idx)))))
    }
}

/// Input batch shape of the 3×224×224 models.
pub type PalmShape = (usize, Const<3>, Const<224>, Const<224>);

/// The data module's PALM loader as a [`BatchSource`]: shuffled per epoch by the loader's own
/// `train_epoch` (with its augmentation, if enabled in its options), in order otherwise.
pub struct PalmSource<'l>(pub &'l PalmLoader<224>);

impl BatchSource<PalmShape, 1> for PalmSource<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn batches<'a>(
        &'a self,
        dev: &'a Cpu,
        batch_size: usize,
        shuffle: Option<(u64, u64)>,
    ) -> anyhow::Result<BatchIter<'a, PalmShape, 1>> {
        let it = match shuffle {
            Some((seed, epoch)) => self.0.train_epoch(dev, batch_size, seed, epoch)?,
            None => self.0.in_order(dev, batch_size)?,
        };
        Ok(Box::new(it.map(|r| {
            r.map(|(images, targets)| Batch { images, targets })
                .map_err(anyhow::Error::from)
        })))
    }
}

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (β = 0.9, 0.999; ε = 1e-8), as Paddle's `Adam`.
    Adam,
    /// SGD with classic momentum and optional L2 weight decay, as Paddle's `Momentum`.
    Momentum,
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Learning rate.
    pub lr: f64,
    /// Epochs.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Seed of initialisation, shuffling and dropout.
    pub seed: u64,
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Momentum coefficient (for [`OptimizerKind::Momentum`]).
    pub momentum: f64,
    /// L2 weight decay added to the gradient (Paddle's `weight_decay`), if any.
    pub weight_decay: Option<f64>,
    /// How the weights start (the course's models: PaddlePaddle's scheme). Only used when the
    /// network is built for this run, not when it resumes from a checkpoint.
    #[serde(default)]
    pub init: Init,
    /// Print a loss line every this many batches (0: never).
    pub log_every: usize,
    /// Show a progress bar and print the course's console lines.
    pub verbose: bool,
}

impl TrainConfig {
    /// The course's recipe for `kind` (its line in [`crate::for_each_model!`]): LeNet, VGG and
    /// GoogLeNet Momentum(lr 0.001, momentum 0.9), AlexNet Adam(lr 0.001), ResNet-50 Momentum
    /// with L2 weight decay 0.001; 5 epochs, batch 10, seed 42.
    pub fn course(kind: ModelKind) -> Self {
        macro_rules! course_optimizer {
            ($($variant:ident: $ty:ident, $name:literal, $input:ident, $opt:ident, $wd:expr, [$($fix:literal => $bound:expr),*];)+) => {
                match kind {
                    $(ModelKind::$variant => (OptimizerKind::$opt, $wd),)+
                }
            };
        }
        let (optimizer, weight_decay): (OptimizerKind, Option<f64>) = crate::for_each_model!(course_optimizer);
        TrainConfig {
            lr: 0.001,
            epochs: 5,
            batch_size: 10,
            seed: 42,
            optimizer,
            momentum: 0.9,
            weight_decay,
            init: Init::Paddle,
            log_every: 10,
            verbose: true,
        }
    }
}

/// One training batch's loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// Epoch (from 0).
    pub epoch: usize,
    /// Batch within the epoch (from 0).
    pub batch: usize,
    /// Mean loss of the batch.
    pub loss: f32,
}

/// A validation pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Samples evaluated.
    pub samples: usize,
    /// Mean loss per sample.
    pub loss: f64,
    /// Accuracy (one logit: at p = 0.5; classes: arg-max).
    pub accuracy: f64,
    /// ROC AUC (one logit only; `None` when a class is missing).
    pub auc: Option<f64>,
    /// Sensitivity at p = 0.5 (one logit only).
    pub sensitivity: Option<f64>,
    /// Specificity at p = 0.5 (one logit only).
    pub specificity: Option<f64>,
    /// Confusion matrix at p = 0.5 (one logit only).
    pub confusion: Option<Confusion>,
    /// Per sample: probability of the positive class (one logit) or of the predicted class.
    pub scores: Vec<f32>,
    /// Per sample: the true class.
    pub labels: Vec<u8>,
    /// Per sample: the predicted class.
    pub predictions: Vec<u8>,
    /// Standard deviation of the logits across the samples (the largest over the outputs): how
    /// much the output still depends on the image. Below [`COLLAPSE_LOGIT_STD`] the network has
    /// collapsed to a constant.
    #[serde(default)]
    pub logit_std: f64,
}

/// A validation pass whose logits vary less than this across images (standard deviation) means
/// the network's output does not depend on its input: training has collapsed (dead ReLUs,
/// saturated sigmoids), or never got going (the course's sigmoid LeNets, whose logits vary by
/// about 1e-4 from the start). AlexNet learning the stand-in varies by 1 or more; a collapsed
/// one by 1e-4 or less.
pub const COLLAPSE_LOGIT_STD: f64 = 1e-3;

impl Evaluation {
    /// Whether the output no longer depends on the image (see [`COLLAPSE_LOGIT_STD`]).
    pub fn collapsed(&self) -> bool {
        self.logit_std < COLLAPSE_LOGIT_STD
    }

    /// The class predicted for every sample, when all predictions are the same.
    pub fn single_class(&self) -> Option<u8> {
        let first = *self.predictions.first()?;
        self.predictions.iter().all(|&p| p == first).then_some(first)
    }

    /// The console line of a validation pass, as the course prints it, with a warning appended
    /// when the network predicts one class for every image or has collapsed to a constant.
    pub fn console_line(&self) -> String {
        let mut line = format!("[validation] accuracy/loss: {:.4}/{:.4}", self.accuracy, self.loss);
        if self.collapsed() {
            let _ = write!(
                line,
                "  -- COLLAPSED: the output does not depend on the image (logit std {:.1e} across {} images)",
                self.logit_std, self.samples
            );
        } else if let Some(c) = self.single_class() {
            let _ = write!(line, "  -- one class: every image is predicted {c}");
        }
        line
    }
}

/// The standard deviation across samples of each of `C` logits, the largest of them.
fn logit_spread(logits: &[f32], classes: usize) -> f64 {
    let n = logits.len() / classes.max(1);
    if n == 0 {
        return 0.0;
    }
    (0..classes)
        .map(|c| {
            let column = logits.iter().skip(c).step_by(classes).map(|&v| v as f64);
            let mean = column.clone().sum::<f64>() / n as f64;
            (column.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64).sqrt()
        })
        .fold(0.0, f64::max)
}

/// One epoch's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (from 0).
    pub epoch: usize,
    /// Mean training loss per sample.
    pub train_loss: f64,
    /// Validation loss per sample.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_accuracy: f64,
    /// Validation AUC (one logit).
    pub val_auc: Option<f64>,
    /// Validation sensitivity (one logit).
    pub val_sensitivity: Option<f64>,
    /// Validation specificity (one logit).
    pub val_specificity: Option<f64>,
    /// Validation confusion matrix (one logit).
    pub val_confusion: Option<Confusion>,
    /// Standard deviation of the validation logits across images (see [`Evaluation::logit_std`]).
    #[serde(default)]
    pub val_logit_std: f64,
    /// The output no longer depended on the image at this validation (see
    /// [`COLLAPSE_LOGIT_STD`]).
    #[serde(default)]
    pub collapsed: bool,
    /// The class predicted for every validation image, when it was one class.
    #[serde(default)]
    pub single_class: Option<u8>,
    /// Seconds of training (without validation).
    pub train_seconds: f64,
    /// Training images per second.
    pub train_images_per_s: f64,
}

/// Everything a run recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Model name.
    pub model: String,
    /// Settings.
    pub config: TrainConfig,
    /// Every training batch.
    pub batches: Vec<BatchRecord>,
    /// Every finished epoch.
    pub epochs: Vec<EpochRecord>,
}

fn opt_cell(v: Option<f64>) -> String {
    v.map(|x| format!("{x}")).unwrap_or_default()
}

impl History {
    /// An empty history.
    pub fn new(model: &str, config: &TrainConfig) -> Self {
        History {
            model: model.to_string(),
            config: config.clone(),
            batches: Vec::new(),
            epochs: Vec::new(),
        }
    }

    /// One CSV row per epoch.
    pub fn to_csv(&self) -> String {
        let mut s = String::from("epoch,train_loss,val_loss,val_accuracy,val_auc,val_sensitivity,val_specificity,tp,fp,tn,fn,val_logit_std,collapsed,train_seconds,train_images_per_s\n");
        for e in &self.epochs {
            let c = e
                .val_confusion
                .map(|c| format!("{},{},{},{}", c.tp, c.fp, c.tn, c.fn_))
                .unwrap_or_else(|| ",,,".into());
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{},{},{}",
                e.epoch,
                e.train_loss,
                e.val_loss,
                e.val_accuracy,
                opt_cell(e.val_auc),
                opt_cell(e.val_sensitivity),
                opt_cell(e.val_specificity),
                c,
                e.val_logit_std,
                e.collapsed,
                e.train_seconds,
                e.train_images_per_s
            );
        }
        s
    }

    /// Writes `metrics.csv` (per epoch) and `metrics.json` (everything) into `dir`.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let csv = dir.join("metrics.csv");
        std::fs::write(&csv, self.to_csv()).with_context(|| format!("writing {}", csv.display()))?;
        let json = dir.join("metrics.json");
        std::fs::write(&json, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", json.display()))?;
        Ok(())
    }
}

/// Training stopped because a batch's loss was NaN or infinite.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("training diverged: loss is {loss} at epoch {epoch}, batch {batch} (lower the learning rate?)")]
pub struct NonFiniteLoss {
    /// Epoch.
    pub epoch: usize,
    /// Batch within the epoch.
    pub batch: usize,
    /// The loss.
    pub loss: f32,
}

/// A model the trainer can drive: evaluation without tape, training with an owned tape.
pub trait Trainable<S: Shape, const C: usize>:
    TensorCollection<f32, Cpu>
    + Module<Tensor<S, f32, Cpu>, Output = Tensor<(usize, Const<C>), f32, Cpu>, Error = CpuError>
    + ModuleMut<
        Tensor<S, f32, Cpu, OwnedTape<f32, Cpu>>,
        Output = Tensor<(usize, Const<C>), f32, Cpu, OwnedTape<f32, Cpu>>,
        Error = CpuError,
    >
{
}

impl<S: Shape, const C: usize, M> Trainable<S, C> for M where
    M: TensorCollection<f32, Cpu>
        + Module<Tensor<S, f32, Cpu>, Output = Tensor<(usize, Const<C>), f32, Cpu>, Error = CpuError>
        + ModuleMut<
            Tensor<S, f32, Cpu, OwnedTape<f32, Cpu>>,
            Output = Tensor<(usize, Const<C>), f32, Cpu, OwnedTape<f32, Cpu>>,
            Error = CpuError,
        >
{
}

/// The configured optimizer.
fn optimizer(cfg: &TrainConfig) -> Optimizer {
    match cfg.optimizer {
        OptimizerKind::Adam => Optimizer::adam(cfg.lr, cfg.weight_decay),
        OptimizerKind::Momentum => Optimizer::momentum(cfg.lr, cfg.momentum, cfg.weight_decay),
    }
}

/// Class labels of a batch's targets: `(n, 1)` 0/1, or arg-max of `(n, C)` one-hot.
fn target_labels<const C: usize>(t: &Tensor<(usize, Const<C>), f32, Cpu>) -> Vec<u8> {
    let v = t.as_vec();
    if C == 1 {
        v.iter().map(|&x| u8::from(x >= 0.5)).collect()
    } else {
        v.chunks(C).map(|r| argmax(r) as u8).collect()
    }
}

fn argmax(r: &[f32]) -> usize {
    r.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
        )
        .0
}

/// The mean loss of a batch of logits against targets: BCE with logits on one logit,
/// softmax cross-entropy otherwise.
fn loss_of<const C: usize, T: Tape<f32, Cpu>>(
    logits: Tensor<(usize, Const<C>), f32, Cpu, T>,
    targets: Tensor<(usize, Const<C>), f32, Cpu>,
) -> Tensor<Rank0, f32, Cpu, T> {
    if C == 1 {
        binary_cross_entropy_with_logits_loss(logits, targets)
    } else {
        cross_entropy_with_logits_loss(logits, targets)
    }
}

/// Per-sample scores and predictions of a batch of logits: one logit → sigmoid probability
/// and `p >= 0.5`; classes → softmax probability of the arg-max and the arg-max.
pub fn scores_of<const C: usize>(logits: &Tensor<(usize, Const<C>), f32, Cpu>) -> (Vec<f32>, Vec<u8>) {
    let v = logits.as_vec();
    if C == 1 {
        let p: Vec<f32> = v.iter().map(|&z| 1.0 / (1.0 + (-z).exp())).collect();
        let pred = p.iter().map(|&p| u8::from(p >= 0.5)).collect();
        (p, pred)
    } else {
        let mut scores = Vec::new();
        let mut preds = Vec::new();
        for r in v.chunks(C) {
            let k = argmax(r);
            let m = r[k];
            let z: f32 = r.iter().map(|&x| (x - m).exp()).sum();
            scores.push(1.0 / z);
            preds.push(k as u8);
        }
        (scores, preds)
    }
}

/// Evaluates `model` on `src` in order, without tape (dropout off).
pub fn evaluate<M: Trainable<S, C>, S: Shape, const C: usize>(
    model: &M,
    dev: &Cpu,
    src: &dyn BatchSource<S, C>,
    batch_size: usize,
) -> anyhow::Result<Evaluation> {
    crate::ops::flush_subnormals();
    let (mut loss_sum, mut n) = (0.0f64, 0usize);
    let (mut scores, mut labels, mut predictions) = (Vec::new(), Vec::new(), Vec::new());
    let mut all_logits = Vec::new();
    for batch in src.batches(dev, batch_size, None)? {
        let Batch { images, targets } = batch?;
        let b = targets.shape().0;
        labels.extend(target_labels(&targets));
        let logits = model
            .try_forward(images)
            .map_err(|e| anyhow::anyhow!("forward pass failed: {e:?}"))?;
        let (s, p) = scores_of(&logits);
        all_logits.extend(logits.as_vec());
        scores.extend(s);
        predictions.extend(p);
        loss_sum += loss_of(logits, targets).array() as f64 * b as f64;
        n += b;
    }
    anyhow::ensure!(n > 0, "no samples to evaluate");
    let correct = labels.iter().zip(&predictions).filter(|(a, b)| a == b).count();
    let (auc, confusion) = if C == 1 {
        (
            metrics::auc(&scores, &labels),
            Some(Confusion::from_probs(&scores, &labels, 0.5)),
        )
    } else {
        (None, None)
    };
    Ok(Evaluation {
        samples: n,
        loss: loss_sum / n as f64,
        accuracy: correct as f64 / n as f64,
        auc,
        sensitivity: confusion.and_then(|c| c.sensitivity()),
        specificity: confusion.and_then(|c| c.specificity()),
        confusion,
        scores,
        labels,
        predictions,
        logit_std: logit_spread(&all_logits, C),
    })
}

fn progress_bar(verbose: bool, total: u64) -> indicatif::ProgressBar {
    if !verbose {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} img, {per_sec}, eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Trains `model` for `cfg.epochs` epochs on `train`, validating on `valid` after each epoch,
/// recording into `history` (which keeps what was recorded when an error stops training).
/// `on_epoch` runs after each epoch's validation (save a checkpoint there); an error from it
/// stops training.
///
/// # Errors
/// [`NonFiniteLoss`] (downcast the `anyhow::Error`) when a batch's loss is NaN or infinite —
/// the optimizer step of that batch is not taken; data and device errors.
pub fn train<M, S, const C: usize>(
    model: &mut M,
    dev: &Cpu,
    train: &dyn BatchSource<S, C>,
    valid: &dyn BatchSource<S, C>,
    cfg: &TrainConfig,
    history: &mut History,
    mut on_epoch: impl FnMut(&M, &History) -> anyhow::Result<()>,
) -> anyhow::Result<()>
where
    M: Trainable<S, C>,
    S: Shape,
{
    anyhow::ensure!(cfg.batch_size > 0, "batch size must be at least 1");
    anyhow::ensure!(!train.is_empty(), "no training samples");
    // Gradients and optimizer state are keyed by tensor id: see `nn::fresh_ids`.
    crate::nn::fresh_ids(model, dev).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    // Subnormal gradients cost a microcode assist each on Intel cores: see `ops::flush_subnormals`.
    crate::ops::flush_subnormals();
    let mut opt = optimizer(cfg);
    let mut grads = model.try_alloc_grads().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let bar = progress_bar(cfg.verbose, (cfg.epochs * train.len()) as u64);
    let say = |line: String| {
        if cfg.verbose {
            // A bar drawn to a non-terminal is hidden and would swallow the line.
            if bar.is_hidden() {
                println!("{line}");
            } else {
                bar.println(line);
            }
        }
    };
    for epoch in 0..cfg.epochs {
        bar.set_message(format!("epoch {}/{}", epoch + 1, cfg.epochs));
        let t0 = Instant::now();
        let (mut loss_sum, mut n) = (0.0f64, 0usize);
        for (batch_id, batch) in train
            .batches(dev, cfg.batch_size, Some((cfg.seed, epoch as u64)))?
            .enumerate()
        {
            let Batch { images, targets } = batch?;
            let b = targets.shape().0;
            let logits = model
                .try_forward_mut(images.traced(grads))
                .map_err(|e| anyhow::anyhow!("forward pass failed: {e:?}"))?;
            let loss = loss_of(logits, targets);
            let value = loss.array();
            history.batches.push(BatchRecord {
                epoch,
                batch: batch_id,
                loss: value,
            });
            if !value.is_finite() {
                bar.abandon();
                return Err(NonFiniteLoss {
                    epoch,
                    batch: batch_id,
                    loss: value,
                }
                .into());
            }
            grads = loss.backward();
            // Also zeroes the gradients for the next step.
            opt.update(model, &mut grads)
                .map_err(|e| anyhow::anyhow!("optimizer step failed: {e:?}"))?;
            loss_sum += value as f64 * b as f64;
            n += b;
            bar.inc(b as u64);
            if cfg.log_every > 0 && batch_id % cfg.log_every == 0 {
                say(format!("epoch: {epoch}, batch_id: {batch_id}, loss is: {value:.4}"));
            }
        }
        let train_seconds = t0.elapsed().as_secs_f64();
        let ev = evaluate(model, dev, valid, cfg.batch_size)?;
        say(ev.console_line());
        history.epochs.push(EpochRecord {
            epoch,
            train_loss: loss_sum / n.max(1) as f64,
            val_loss: ev.loss,
            val_accuracy: ev.accuracy,
            val_auc: ev.auc,
            val_sensitivity: ev.sensitivity,
            val_specificity: ev.specificity,
            val_confusion: ev.confusion,
            val_logit_std: ev.logit_std,
            collapsed: ev.collapsed(),
            single_class: ev.single_class(),
            train_seconds,
            train_images_per_s: n as f64 / train_seconds.max(1e-9),
        });
        on_epoch(model, history)?;
    }
    bar.finish_and_clear();
    Ok(())
}

/// Takes `steps` optimizer steps of `cfg`'s optimizer on `data`'s batches of `cfg.batch_size`,
/// in order and cycling — no shuffling, no validation — and returns each step's loss. This is
/// the training step of [`train`] on batches fixed in advance, for comparing it step by step
/// with another framework (`tools/step_parity.py`).
///
/// # Errors
/// [`NonFiniteLoss`] when a loss is NaN or infinite; device errors.
pub fn train_steps<M, S, const C: usize>(
    model: &mut M,
    dev: &Cpu,
    data: &dyn BatchSource<S, C>,
    cfg: &TrainConfig,
    steps: usize,
) -> anyhow::Result<Vec<f32>>
where
    M: Trainable<S, C>,
    S: Shape,
{
    anyhow::ensure!(cfg.batch_size > 0, "batch size must be at least 1");
    anyhow::ensure!(!data.is_empty(), "no samples");
    // Gradients and optimizer state are keyed by tensor id: see `nn::fresh_ids`.
    crate::nn::fresh_ids(model, dev).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    // Subnormal gradients cost a microcode assist each on Intel cores: see `ops::flush_subnormals`.
    crate::ops::flush_subnormals();
    let mut opt = optimizer(cfg);
    let mut grads = model.try_alloc_grads().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut losses = Vec::with_capacity(steps);
    'cycle: for epoch in 0.. {
        for (batch, item) in data.batches(dev, cfg.batch_size, None)?.enumerate() {
            if losses.len() == steps {
                break 'cycle;
            }
            let Batch { images, targets } = item?;
            let logits = model
                .try_forward_mut(images.traced(grads))
                .map_err(|e| anyhow::anyhow!("forward pass failed: {e:?}"))?;
            let loss = loss_of(logits, targets);
            let value = loss.array();
            anyhow::ensure!(
                value.is_finite(),
                NonFiniteLoss {
                    epoch,
                    batch,
                    loss: value
                }
            );
            losses.push(value);
            grads = loss.backward();
            // Also zeroes the gradients for the next step.
            opt.update(model, &mut grads)
                .map_err(|e| anyhow::anyhow!("optimizer step failed: {e:?}"))?;
        }
    }
    Ok(losses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_of_one_logit_is_sigmoid() {
        let dev = Cpu::default();
        let t = dev.tensor_from_vec(vec![0.0f32, 2.0, -1.0], (3, Const::<1>));
        let (p, pred) = scores_of(&t);
        assert!((p[1] - 0.880_797).abs() < 1e-5);
        assert!((p[2] - 0.268_941).abs() < 1e-5);
        assert_eq!(pred, vec![1, 1, 0]);
    }

    #[test]
    fn in_memory_batches_cover_every_sample_once() {
        let dev = Cpu::default();
        let set = InMemory::<(usize, Const<1>, Const<2>, Const<2>), 1>::new(
            (0..20).map(|i| i as f32).collect(),
            vec![0, 1, 1, 0, 1],
        )
        .unwrap();
        let mut firsts = Vec::new();
        let mut sizes = Vec::new();
        for b in set.batches(&dev, 2, Some((7, 0))).unwrap() {
            let b = b.unwrap();
            sizes.push(b.targets.shape().0);
            let x = b.images.as_vec();
            let t = b.targets.as_vec();
            for k in 0..t.len() {
                let i = (x[k * 4] / 4.0) as usize;
                assert_eq!(t[k], set.labels[i] as f32);
                firsts.push(i);
            }
        }
        assert_eq!(sizes, vec![2, 2, 1]);
        firsts.sort();
        assert_eq!(firsts, vec![0, 1, 2, 3, 4]);
    }
}
