//! [`Network`]: a network of any [`ModelKind`] behind one type without generic parameters.
//!
//! The binary and the notebooks work through it. Training, evaluation and checkpoint code is
//! generic over the model type, and Rust compiles generic code where it is used. Calling it
//! through `Network` means it is compiled once, here in the library, so a notebook cell that
//! trains AlexNet compiles in seconds instead of rebuilding the kernels.

use crate::checkpoint::{self, Checkpoint};
use crate::data::{self, PalmLoader};
use crate::explain::{self, Explain, Explanation};
use crate::models::ModelKind;
use crate::nn::{self, Init};
use crate::summary::{Summarize, Summary};
use crate::train::{self, Evaluation, History, InMemory, PalmSource, TrainConfig};
use anyhow::{Context, Result};
use dfdx::prelude::*;
use std::path::{Path, PathBuf};

/// Input batch shape of [`LeNetMnist`].
pub type MnistShape = (usize, Const<1>, Const<28>, Const<28>);

/// Input batch shape of the fundus models.
pub type PalmShape = (usize, Const<3>, Const<224>, Const<224>);

/// The data a [`Network`] trains and evaluates on: the iChallenge-PM splits (fundus models) or
/// MNIST digits held in memory (LeNet-MNIST).
pub enum Datasets {
    /// Training and validation loaders of iChallenge-PM, 3×224×224.
    Palm {
        /// Training split (shuffled per epoch, augmented if its options say so).
        train: PalmLoader<224>,
        /// Validation split (in order, never augmented).
        valid: PalmLoader<224>,
    },
    /// MNIST training and test digits, 1×28×28, scaled to [-1, 1].
    Mnist {
        /// Training digits.
        train: InMemory<MnistShape, 10>,
        /// Test digits.
        valid: InMemory<MnistShape, 10>,
    },
}

impl Datasets {
    /// Training samples.
    pub fn train_len(&self) -> usize {
        match self {
            Datasets::Palm { train, .. } => train.len(),
            Datasets::Mnist { train, .. } => train.labels.len(),
        }
    }

    /// Validation samples.
    pub fn valid_len(&self) -> usize {
        match self {
            Datasets::Palm { valid, .. } => valid.len(),
            Datasets::Mnist { valid, .. } => valid.labels.len(),
        }
    }
}

/// Class probabilities of a batch of inputs, one entry per sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// One logit: the probability of class 1 (pathologic myopia). Classes: the probability of
    /// the predicted class.
    pub scores: Vec<f32>,
    /// The predicted class (one logit: `score >= 0.5`; classes: the arg-max).
    pub classes: Vec<u8>,
}

/// The model types of the registry ([`crate::for_each_model!`]), one variant each, and the
/// `with_model!` dispatch over them.
macro_rules! define_model {
    ($($variant:ident: $ty:ident, $name:literal, $input:ident, $opt:ident, $wd:expr, [$($fix:literal => $bound:expr),*];)+) => {
        #[derive(Clone)]
        enum Model {
            $($variant(Box<crate::models::$ty>),)+
        }

        impl Model {
            fn build(kind: ModelKind, dev: &Cpu) -> Self {
                match kind {
                    $(ModelKind::$variant => Model::$variant(Box::new(dev.build_module::<crate::models::$ty, f32>())),)+
                }
            }

            fn kind(&self) -> ModelKind {
                match self {
                    $(Model::$variant(_) => ModelKind::$variant,)+
                }
            }
        }

        /// Evaluates `$palm` (fundus models) or `$mnist` (digit models) with `$m` bound to the
        /// concrete model: each arm is type-checked, and so monomorphised, for its own model type.
        macro_rules! with_model {
            ($model:expr, $m:ident => palm: $palm:expr, mnist: $mnist:expr,) => {
                with_model!($model, $m => palm: $palm, mnist: $mnist)
            };
            ($model:expr, $m:ident => palm: $palm:expr, mnist: $mnist:expr) => {
                match $model {
                    $(Model::$variant($m) => with_model!(@input $input, $palm, $mnist),)+
                }
            };
            (@input palm, $palm:expr, $mnist:expr) => { $palm };
            (@input mnist, $palm:expr, $mnist:expr) => { $mnist };
        }
    };
}

crate::for_each_model!(define_model);

impl Model {
    /// Gives every tensor a new id ([`crate::nn::fresh_ids`]) before a Grad-CAM pass, whose
    /// gradients dfdx keys by id, so that a model built in an earlier evcxr cell (another copy
    /// of dfdx's id counter) cannot share ids with the pass's activations. Training does the
    /// same in [`train::train`].
    fn fresh_ids(&mut self, dev: &Cpu) -> Result<()> {
        with_model!(self, m =>
            palm: crate::nn::fresh_ids(m.as_mut(), dev),
            mnist: crate::nn::fresh_ids(m.as_mut(), dev),
        )
        .map_err(dfdx_err("renumbering the tensors"))
    }
}

/// Fundus photos (JPEG or PNG files) as model input, preprocessed like the course (BGR,
/// 224×224 bilinear, `x/255*2-1`): `3×224×224` floats per file.
///
/// # Errors
/// An unreadable or undecodable image, named.
pub fn fundus_inputs(images: &[PathBuf]) -> Result<Vec<f32>> {
    let mut inputs = Vec::with_capacity(images.len() * 3 * 224 * 224);
    for img in images {
        let raw = std::fs::read(img).with_context(|| format!("reading {}", img.display()))?;
        let chw = data::image::decode_to_chw(
            &raw,
            img,
            224,
            data::DecodeMode::default(),
            data::ChannelOrder::default(),
        )?;
        inputs.extend(chw.iter().map(|&b| data::transform::normalize(b)));
    }
    Ok(inputs)
}

/// A network of any [`ModelKind`] with the device it was built on (whose seeded generator also
/// draws the dropout masks while training).
pub struct Network {
    dev: Cpu,
    model: Model,
    /// How the weights started; recorded in checkpoints. `None` for weights loaded from a file
    /// that does not say.
    init: Option<Init>,
}

fn dfdx_err(what: &str) -> impl Fn(CpuError) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{what} failed: {e:?}")
}

impl Network {
    /// A freshly initialised network from `seed`, with the course's initialisation
    /// ([`Init::Paddle`]).
    pub fn new(kind: ModelKind, seed: u64) -> Self {
        Self::with_init(kind, seed, Init::Paddle)
    }

    /// A freshly initialised network from `seed`, its weights drawn by `init`.
    pub fn with_init(kind: ModelKind, seed: u64, init: Init) -> Self {
        let mut net = Self::built(kind, seed);
        // The course's own choices for single layers go with the course's scheme.
        let overrides: Vec<(&str, nn::init::Draw)> = match init {
            Init::Paddle => kind
                .course_uniform_init()
                .into_iter()
                .map(|(name, bound)| (name, nn::init::Draw::Uniform { bound }))
                .collect(),
            Init::PyTorch => Vec::new(),
        };
        with_model!(&mut net.model, m =>
            palm: nn::init::reinit_with(m.as_mut(), init, seed, &overrides),
            mnist: nn::init::reinit_with(m.as_mut(), init, seed, &overrides),
        );
        net.init = Some(init);
        net
    }

    /// How the weights started, when known (a checkpoint records it).
    pub fn init(&self) -> Option<Init> {
        self.init
    }

    /// The network as dfdx builds it (PyTorch's scheme, from the device's generator).
    fn built(kind: ModelKind, seed: u64) -> Self {
        let dev = Cpu::seed_from_u64(seed);
        let model = Model::build(kind, &dev);
        Network { dev, model, init: None }
    }

    /// The network saved in `path`, of the kind its metadata names.
    ///
    /// # Errors
    /// A missing or unreadable file, or tensors that do not fit the model (named in the error).
    pub fn load(path: &Path) -> Result<Self> {
        let ck = Checkpoint::read(path)?;
        let kind = ck.model_kind()?;
        let mut net = Network::built(kind, 0);
        with_model!(&mut net.model, m => palm: ck.load_into(m.as_mut(), kind)?, mnist: ck.load_into(m.as_mut(), kind)?);
        net.init = ck.metadata.get(checkpoint::INIT_KEY).and_then(|s| s.parse().ok());
        Ok(net)
    }

    /// Replaces the weights with those of the checkpoint `path`, which must be of this kind.
    ///
    /// # Errors
    /// As [`Network::load`], and when the checkpoint holds another kind of model.
    pub fn load_weights(&mut self, path: &Path) -> Result<()> {
        let kind = self.kind();
        let ck = Checkpoint::read(path)?;
        with_model!(&mut self.model, m => palm: ck.load_checked(m.as_mut(), kind)?, mnist: ck.load_checked(m.as_mut(), kind)?);
        self.init = ck.metadata.get(checkpoint::INIT_KEY).and_then(|s| s.parse().ok());
        Ok(())
    }

    /// Saves the weights to `path` (safetensors, PyTorch names and layouts; atomic).
    pub fn save(&self, path: &Path) -> Result<()> {
        let kind = self.kind();
        let meta = self.metadata();
        with_model!(&self.model, m => palm: checkpoint::save_with(m.as_ref(), kind, &meta, path)?, mnist: checkpoint::save_with(m.as_ref(), kind, &meta, path)?);
        Ok(())
    }

    /// The metadata written beside the model kind: the initialisation, when known.
    fn metadata(&self) -> Vec<(&'static str, &'static str)> {
        self.init
            .map(|i| (checkpoint::INIT_KEY, i.name()))
            .into_iter()
            .collect()
    }

    /// Which model this is.
    pub fn kind(&self) -> ModelKind {
        self.model.kind()
    }

    /// The shape of one input sample, `[channels, height, width]`.
    pub fn input_shape(&self) -> [usize; 3] {
        self.kind().input_shape()
    }

    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        with_model!(&self.model, m => palm: m.num_trainable_params(), mnist: m.num_trainable_params())
    }

    /// The layer-shape table for a random batch of `batch` inputs (the course's printout).
    pub fn summary(&self, batch: usize) -> Summary {
        with_model!(&self.model, m => palm: m.summary(batch), mnist: m.summary(batch))
    }

    /// Every layer's output shape and value range for `inputs` (whole samples, flattened, as
    /// the data loaders give them); see [`Summarize::profile`].
    pub fn profile(&self, inputs: &[f32]) -> Result<Summary> {
        with_model!(&self.model, m => palm: m.profile(inputs), mnist: m.profile(inputs))
    }

    /// The output logits of `inputs` (whole samples, flattened), `classes` per sample, in
    /// evaluation mode (dropout off).
    pub fn logits(&self, inputs: &[f32]) -> Result<Vec<f32>> {
        let [c, h, w] = self.input_shape();
        let per_sample = c * h * w;
        anyhow::ensure!(
            !inputs.is_empty() && inputs.len().is_multiple_of(per_sample),
            "{} input values are not a whole number of {c}×{h}×{w} samples",
            inputs.len()
        );
        let mut out = Vec::new();
        // Batches of 10 keep AlexNet's intermediate tensors small.
        for chunk in inputs.chunks(10 * per_sample) {
            let n = chunk.len() / per_sample;
            let logits = with_model!(&self.model, m =>
                palm: m.try_forward(self.dev.tensor_from_vec(chunk.to_vec(), (n, Const::<3>, Const::<224>, Const::<224>)))
                    .map_err(dfdx_err("forward pass"))?.as_vec(),
                mnist: m.try_forward(self.dev.tensor_from_vec(chunk.to_vec(), (n, Const::<1>, Const::<28>, Const::<28>)))
                    .map_err(dfdx_err("forward pass"))?.as_vec(),
            );
            out.extend(logits);
        }
        Ok(out)
    }

    /// Class probabilities of `inputs` (whole samples, flattened), in evaluation mode.
    pub fn predict(&self, inputs: &[f32]) -> Result<Predictions> {
        let logits = self.logits(inputs)?;
        let (scores, classes) = if self.kind().takes_digits() {
            let n = logits.len() / 10;
            train::scores_of(&self.dev.tensor_from_vec(logits, (n, Const::<10>)))
        } else {
            let n = logits.len();
            train::scores_of(&self.dev.tensor_from_vec(logits, (n, Const::<1>)))
        };
        Ok(Predictions { scores, classes })
    }

    /// The probability of pathologic myopia for each image file (JPEG or PNG), preprocessed
    /// like the course (BGR, 224×224 bilinear, `x/255*2-1`). Fundus models only.
    ///
    /// # Errors
    /// An unreadable or undecodable image (named), or a LeNet-MNIST network.
    pub fn predict_files(&self, images: &[PathBuf]) -> Result<Vec<f32>> {
        anyhow::ensure!(
            !self.kind().takes_digits(),
            "predicting fundus photos needs a fundus model, not {}",
            self.kind()
        );
        if images.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.predict(&fundus_inputs(images)?)?.scores)
    }

    /// Grad-CAM maps ([`crate::explain`]) of `inputs` (whole samples, flattened) at `layer`, or
    /// at the model's last convolutional stage ([`Explain::cam_layer`]) when `None`: for the
    /// pathologic logit (fundus models) or the predicted digit (LeNet-MNIST). Evaluation mode.
    ///
    /// # Errors
    /// An unknown layer, a model without a default one, a layer whose output is not a stack of
    /// maps, or inputs that are not whole samples.
    pub fn grad_cam(&self, inputs: &[f32], layer: Option<&str>) -> Result<Vec<Explanation>> {
        let mut model = self.model.clone();
        model.fresh_ids(&self.dev)?;
        crate::ops::flush_subnormals();
        self.grad_cam_of(&model, inputs, layer)
    }

    /// [`Network::grad_cam`] through `model`: this network's model with fresh tensor ids.
    fn grad_cam_of(&self, model: &Model, inputs: &[f32], layer: Option<&str>) -> Result<Vec<Explanation>> {
        let [c, h, w] = self.input_shape();
        let per_sample = c * h * w;
        let default_layer = with_model!(&self.model, m => palm: m.cam_layer(), mnist: m.cam_layer());
        let layer = layer.or(default_layer).with_context(|| {
            format!(
                "{} names no default Grad-CAM layer; choose one of its layers",
                self.kind()
            )
        })?;
        let predictions = self.predict(inputs)?;
        let mut out = Vec::with_capacity(predictions.scores.len());
        // Batches of 10, as in `logits`: the traced pass keeps every activation of the batch.
        for (k, chunk) in inputs.chunks(10 * per_sample).enumerate() {
            let n = chunk.len() / per_sample;
            let classes = &predictions.classes[k * 10..k * 10 + n];
            let targets: Vec<usize> = if self.kind().takes_digits() {
                classes.iter().map(|&c| c as usize).collect()
            } else {
                vec![0; n]
            };
            let (_, probed) = with_model!(model, m =>
                palm: m.probe_layer(chunk, layer, &targets)?,
                mnist: m.probe_layer(chunk, layer, &targets)?,
            );
            let maps = explain::grad_cam(&probed).with_context(|| format!("layer `{layer}`"))?;
            for (i, cam) in maps.into_iter().enumerate() {
                out.push(Explanation {
                    layer: layer.to_string(),
                    score: predictions.scores[k * 10 + i],
                    class: classes[i],
                    cam,
                });
            }
        }
        Ok(out)
    }

    /// Grad-CAM's lesion share ([`explain::LesionReport`]) over the positive validation photos
    /// of `data`, against the synthetic set's lesion `masks` (at most `limit` photos, in
    /// order). Fundus models only.
    ///
    /// # Errors
    /// Digit data, an unreadable photo, or a validation photo the masks do not know.
    pub fn lesion_report(
        &self,
        data: &Datasets,
        masks: &data::synth::LesionMasks,
        layer: Option<&str>,
        limit: Option<usize>,
    ) -> Result<explain::LesionReport> {
        let Datasets::Palm { valid, .. } = data else {
            anyhow::bail!("lesion masks exist for fundus photos only");
        };
        let positives: Vec<usize> = (0..valid.len())
            .filter(|&i| valid.samples()[i].label == 1)
            .take(limit.unwrap_or(usize::MAX))
            .collect();
        let mut model = self.model.clone();
        model.fresh_ids(&self.dev)?;
        crate::ops::flush_subnormals();
        let mut report = explain::LesionReport {
            layer: String::new(),
            images: Vec::new(),
            zero_maps: 0,
        };
        for chunk in positives.chunks(10) {
            let mut inputs = Vec::with_capacity(chunk.len() * 3 * 224 * 224);
            for &i in chunk {
                inputs.extend(valid.image(i)?);
            }
            for (&i, e) in chunk.iter().zip(self.grad_cam_of(&model, &inputs, layer)?) {
                let name = &valid.samples()[i].name;
                let mask = masks.mask(name, 224, 224)?.with_context(|| {
                    format!("no lesion mask for {name}: is this the synthetic set the masks describe?")
                })?;
                report.layer = e.layer;
                match explain::lesion_share(&e.cam.resized(224, 224), &mask) {
                    Some((share, area)) => report.images.push(explain::LesionShare {
                        name: name.clone(),
                        score: e.score,
                        share,
                        area,
                    }),
                    None if mask.iter().any(|&m| m) => report.zero_maps += 1,
                    None => {}
                }
            }
        }
        Ok(report)
    }

    /// Evaluates on the validation split of `data` in order, `batch_size` images at a time.
    ///
    /// # Errors
    /// Data errors, and data of the wrong kind (digits for a fundus model or the reverse).
    pub fn evaluate(&self, data: &Datasets, batch_size: usize) -> Result<Evaluation> {
        anyhow::ensure!(batch_size > 0, "batch size must be at least 1");
        let dev = &self.dev;
        with_model!(&self.model, m =>
            palm: train::evaluate(m.as_ref(), dev, &PalmSource(palm_split(data, self.kind())?.1), batch_size),
            mnist: train::evaluate(m.as_ref(), dev, mnist_split(data)?.1, batch_size),
        )
    }

    /// Trains on `data` with `cfg`, recording into `history` (see [`train::train`]). After each
    /// epoch's validation the weights are saved to `checkpoint` (when given), then `on_epoch`
    /// runs with the history so far; an error from either stops training.
    pub fn train(
        &mut self,
        data: &Datasets,
        cfg: &TrainConfig,
        history: &mut History,
        checkpoint: Option<&Path>,
        mut on_epoch: impl FnMut(&History) -> Result<()>,
    ) -> Result<()> {
        let kind = self.kind();
        let meta = self.metadata();
        let dev = &self.dev;
        let mut after_epoch = |m: &dyn SaveAs, h: &History| -> Result<()> {
            if let Some(path) = checkpoint {
                m.save_as(kind, &meta, path)?;
            }
            on_epoch(h)
        };
        with_model!(&mut self.model, m =>
            palm: {
                let (tr, va) = palm_split(data, kind)?;
                train::train(m.as_mut(), dev, &PalmSource(tr), &PalmSource(va), cfg, history, |m, h| after_epoch(m, h))
            },
            mnist: {
                let (tr, va) = mnist_split(data)?;
                train::train(m.as_mut(), dev, tr, va, cfg, history, |m, h| after_epoch(m, h))
            },
        )
    }
}

impl Network {
    /// Takes `steps` optimizer steps on `images` (whole samples, flattened, as the loaders give
    /// them) and their class `labels`, in order, `cfg.batch_size` at a time, cycling; returns
    /// each step's loss (see [`train::train_steps`]). Dropout draws from this network's
    /// generator; a checkpoint with `drop1.p = 0` turns it off.
    ///
    /// # Errors
    /// Inputs that are not whole samples of this model, labels out of range, a non-finite loss.
    pub fn train_steps(
        &mut self,
        images: Vec<f32>,
        labels: Vec<usize>,
        cfg: &TrainConfig,
        steps: usize,
    ) -> Result<Vec<f32>> {
        let dev = &self.dev;
        with_model!(&mut self.model, m =>
            palm: train::train_steps(m.as_mut(), dev, &InMemory::<PalmShape, 1>::new(images, labels)?, cfg, steps),
            mnist: train::train_steps(m.as_mut(), dev, &InMemory::<MnistShape, 10>::new(images, labels)?, cfg, steps),
        )
    }
}

impl Network {
    /// Training (forward, backward, Adam) and evaluation throughput on random batches (see
    /// [`crate::bench::bench_model`]). The weights change: benchmark a fresh network.
    ///
    /// # Errors
    /// A digit model (the benchmark feeds 3×224×224 photos), or a kernel error.
    pub fn bench(&mut self, config: crate::bench::BenchConfig) -> Result<crate::bench::BenchResult> {
        let name = self.kind().name();
        with_model!(&mut self.model, m =>
            palm: crate::bench::bench_model(name, m.as_mut(), config).map_err(dfdx_err("benchmark")),
            mnist: {
                let _ = m;
                anyhow::bail!("the benchmark feeds 3×224×224 photos; {name} takes digits")
            },
        )
    }
}

/// Saving a concrete model from inside the training loop's epoch callback.
trait SaveAs {
    fn save_as(&self, kind: ModelKind, meta: &[(&str, &str)], path: &Path) -> Result<()>;
}

impl<M: TensorCollection<f32, Cpu>> SaveAs for M {
    fn save_as(&self, kind: ModelKind, meta: &[(&str, &str)], path: &Path) -> Result<()> {
        Ok(checkpoint::save_with(self, kind, meta, path)?)
    }
}

fn palm_split(data: &Datasets, kind: ModelKind) -> Result<(&PalmLoader<224>, &PalmLoader<224>)> {
    match data {
        Datasets::Palm { train, valid } => Ok((train, valid)),
        Datasets::Mnist { .. } => anyhow::bail!("{kind} takes fundus photos, but the data is MNIST digits"),
    }
}

fn mnist_split(data: &Datasets) -> Result<(&InMemory<MnistShape, 10>, &InMemory<MnistShape, 10>)> {
    match data {
        Datasets::Mnist { train, valid } => Ok((train, valid)),
        Datasets::Palm { .. } => anyhow::bail!("digit models take MNIST digits, but the data is fundus photos"),
    }
}
