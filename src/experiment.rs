//! One training run from start to finish: load the data, build (or resume) the network, train
//! with the course's recipe or another, and write the run folder — `model.safetensors` after
//! every epoch, `metrics.csv`, `metrics.json`, and the plots (`loss`, `metrics`, `confusion`,
//! `roc`, as SVG and PNG). `palm-cnn train` and the notebooks both run through [`Experiment`].
//!
//! A finished run also leaves `run.json`, what identifies it (model, data folder, subset,
//! augmentation, recipe and seed). [`Experiment::run_or_reuse`] loads such a run instead of
//! training again when it matches: a teacher can show a chapter from the main job's
//! `runs/alexnet` without waiting for five epochs.

use crate::data::{self, DecodeMode, LoadOptions, PalmLoader, Sample};
use crate::models::ModelKind;
use crate::network::{Datasets, Network};
use crate::plot;
use crate::train::{Evaluation, History, InMemory, TrainConfig};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file in a run folder that identifies a finished run.
pub const RUN_KEY_FILE: &str = "run.json";

/// What makes two runs the same: a run folder is reused only when all of it matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunKey {
    /// The model's name.
    pub model: String,
    /// The data: the iChallenge-PM folder as resolved (a synthetic set's folder name carries
    /// its generator version and seed), or `mnist` for the shipped digits.
    pub data: String,
    /// The seeded subset's size, if any.
    pub limit: Option<usize>,
    /// Whether training images were augmented.
    pub augment: bool,
    /// How the JPEGs were decoded (runs from before this field was recorded used `fast`).
    #[serde(default)]
    pub decode: DecodeMode,
    /// The recipe, seed and initialisation (console settings left out).
    pub config: TrainConfig,
    /// The checkpoint a resumed run started from.
    pub resume: Option<PathBuf>,
}

/// Seed of the `limit` subsets: fixed, so training and a later evaluation pick the same samples.
const SUBSET_SEED: u64 = 0x5EED;

/// A seeded subset of at most `limit` items, in their original order.
pub fn subset<T: Clone>(items: &[T], limit: Option<usize>) -> Vec<T> {
    match limit {
        Some(l) if l < items.len() => {
            let mut idx = data::epoch_order(items.len(), SUBSET_SEED, u64::MAX)[..l].to_vec();
            idx.sort_unstable();
            idx.into_iter().map(|i| items[i].clone()).collect()
        }
        _ => items.to_vec(),
    }
}

impl Datasets {
    /// The iChallenge-PM splits under `root` (`None`: `$PALM_DATA`, else the cached synthetic
    /// set), each cut to a seeded subset of at most `limit` images, decoded now (in parallel).
    /// `augment` turns on the default augmentation for the training split.
    pub fn palm(root: Option<&Path>, limit: Option<usize>, augment: bool, progress: bool) -> Result<Self> {
        Self::palm_decoded(root, limit, augment, DecodeMode::default(), progress)
    }

    /// [`Datasets::palm`] with the JPEGs decoded by `decode` (the course's path is
    /// [`DecodeMode::Exact`]).
    pub fn palm_decoded(
        root: Option<&Path>,
        limit: Option<usize>,
        augment: bool,
        decode: DecodeMode,
        progress: bool,
    ) -> Result<Self> {
        let root = match root {
            Some(p) => p.to_path_buf(),
            None => data::default_data_dir().context("preparing the synthetic data set")?,
        };
        let ds = data::open(&root).with_context(|| format!("opening {}", root.display()))?;
        let opts = LoadOptions {
            augment: augment.then(data::Augment::default),
            decode,
            progress,
            ..LoadOptions::default()
        };
        let train = PalmLoader::from_samples(subset(&ds.train.samples, limit), opts.clone());
        let valid = PalmLoader::from_samples(subset(&ds.valid.samples, limit), LoadOptions { augment: None, ..opts });
        train.preload()?;
        valid.preload()?;
        Ok(Datasets::Palm { train, valid })
    }

    /// The shipped MNIST digits (4,000 training, 1,000 test), each cut to a seeded subset of at
    /// most `limit` digits.
    pub fn mnist(limit: Option<usize>) -> Result<Self> {
        let (tr, te) = data::mnist::builtin_split()?;
        let cut = |m: &data::mnist::Mnist| {
            let idx = subset(&(0..m.len()).collect::<Vec<_>>(), limit);
            let images = idx.iter().flat_map(|&i| m.image(i).to_vec()).collect();
            let labels = idx.iter().map(|&i| m.labels[i]).collect();
            InMemory::from_mnist(&data::mnist::Mnist { images, labels })
        };
        Ok(Datasets::Mnist {
            train: cut(&tr),
            valid: cut(&te),
        })
    }

    /// The data `kind` trains on: MNIST for LeNet-MNIST (`root` and `decode` ignored),
    /// iChallenge-PM else.
    pub fn for_model(
        kind: ModelKind,
        root: Option<&Path>,
        limit: Option<usize>,
        augment: bool,
        decode: DecodeMode,
        progress: bool,
    ) -> Result<Self> {
        if kind.takes_digits() {
            Datasets::mnist(limit)
        } else {
            Datasets::palm_decoded(root, limit, augment, decode, progress)
        }
    }

    /// The validation samples (file names, labels, sources) of iChallenge-PM, in evaluation
    /// order; empty for MNIST.
    pub fn valid_samples(&self) -> &[Sample] {
        match self {
            Datasets::Palm { valid, .. } => valid.samples(),
            Datasets::Mnist { .. } => &[],
        }
    }
}

/// What to train and where to write it.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// The network.
    pub model: ModelKind,
    /// iChallenge-PM folder (`None`: `$PALM_DATA`, else the cached synthetic set).
    pub data: Option<PathBuf>,
    /// Use a seeded subset of at most this many training and validation samples each.
    pub limit: Option<usize>,
    /// Augment training images.
    pub augment: bool,
    /// How JPEGs are decoded (default [`DecodeMode::Fast`]).
    pub decode: DecodeMode,
    /// Optimizer, learning rate, epochs, batch size, seed.
    pub config: TrainConfig,
    /// The run folder.
    pub out: PathBuf,
    /// Start from this checkpoint instead of a fresh initialisation.
    pub resume: Option<PathBuf>,
}

impl Experiment {
    /// The course's recipe for `model` on the default data, written to `runs/<model>`.
    pub fn course(model: ModelKind) -> Self {
        Experiment {
            model,
            data: None,
            limit: None,
            augment: false,
            decode: DecodeMode::default(),
            config: TrainConfig::course(model),
            out: PathBuf::from("runs").join(model.name()),
            resume: None,
        }
    }

    /// `model.safetensors` in the run folder.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.out.join("model.safetensors")
    }

    /// Loads this experiment's data (see [`Datasets::for_model`]).
    pub fn load_data(&self) -> Result<Datasets> {
        Datasets::for_model(
            self.model,
            self.data.as_deref(),
            self.limit,
            self.augment,
            self.decode,
            self.config.verbose,
        )
    }

    /// What identifies this experiment's run (see [`RunKey`]).
    pub fn key(&self) -> Result<RunKey> {
        let data = match (&self.data, self.model.takes_digits()) {
            (_, true) => "mnist".to_string(),
            (Some(p), false) => p.display().to_string(),
            (None, false) => data::default_data_dir()?.display().to_string(),
        };
        Ok(RunKey {
            model: self.model.name().to_string(),
            data,
            limit: self.limit,
            augment: self.augment,
            decode: self.decode,
            config: TrainConfig {
                log_every: 0,
                verbose: false,
                ..self.config.clone()
            },
            resume: self.resume.clone(),
        })
    }

    /// The finished run in [`Experiment::out`] if it was made by this same experiment (its
    /// `run.json` equals [`Experiment::key`], and its checkpoint and metrics are there), else
    /// `None`.
    pub fn finished_run(&self) -> Result<Option<(Network, History)>> {
        let key_file = self.out.join(RUN_KEY_FILE);
        let Ok(text) = std::fs::read_to_string(&key_file) else {
            return Ok(None);
        };
        let Ok(recorded) = serde_json::from_str::<RunKey>(&text) else {
            return Ok(None);
        };
        let metrics = self.out.join("metrics.json");
        if recorded != self.key()? || !self.checkpoint_path().is_file() || !metrics.is_file() {
            return Ok(None);
        }
        let history: History = serde_json::from_str(
            &std::fs::read_to_string(&metrics).with_context(|| format!("reading {}", metrics.display()))?,
        )
        .with_context(|| format!("parsing {}", metrics.display()))?;
        if history.epochs.len() != self.config.epochs {
            return Ok(None);
        }
        let network = Network::load(&self.checkpoint_path())?;
        Ok(Some((network, history)))
    }

    /// [`Experiment::run_on`], unless [`Experiment::out`] holds a finished run of this same
    /// experiment: then that run's network and history are loaded and the network is evaluated
    /// on `data` again (so the scores come from the checkpoint at hand). Prints which it did.
    /// [`Outcome::reused`] tells it too.
    pub fn run_or_reuse(&self, data: &Datasets) -> Result<Outcome> {
        let Some((network, history)) = self.finished_run()? else {
            println!("no finished run of this experiment in {}: training", self.out.display());
            return self.run_on(data);
        };
        println!(
            "reusing the finished run in {} (same model, data, recipe and seed; {} epochs); \
             delete its {RUN_KEY_FILE} to train again",
            self.out.display(),
            history.epochs.len()
        );
        let evaluation = network.evaluate(data, self.config.batch_size)?;
        let plots = ["loss", "metrics", "confusion", "roc"]
            .iter()
            .flat_map(|name| ["svg", "png"].map(|ext| self.out.join(format!("{name}.{ext}"))))
            .filter(|p| p.is_file())
            .collect();
        Ok(Outcome {
            network,
            history,
            evaluation,
            checkpoint: self.checkpoint_path(),
            plots,
            reused: true,
        })
    }

    /// Loads the data, then [`Experiment::run_on`] it.
    pub fn run(&self) -> Result<Outcome> {
        self.run_on(&self.load_data()?)
    }

    /// Trains on `data` (loaded by [`Experiment::load_data`] or [`Datasets`]' constructors),
    /// saving the checkpoint and metrics after every epoch and the plots at the end, then
    /// evaluates the final network on the validation split.
    ///
    /// # Errors
    /// Data, checkpoint and I/O errors; [`crate::train::NonFiniteLoss`] when training
    /// diverges. The metrics recorded so far are written either way, and the error says
    /// which epoch's checkpoint was kept.
    pub fn run_on(&self, data: &Datasets) -> Result<Outcome> {
        let key = self.key()?;
        // A run folder being overwritten no longer holds the run its old key describes.
        let key_file = self.out.join(RUN_KEY_FILE);
        if key_file.exists() {
            std::fs::remove_file(&key_file).with_context(|| format!("removing {}", key_file.display()))?;
        }
        let mut network = Network::with_init(self.model, self.config.seed, self.config.init);
        if let Some(r) = &self.resume {
            network.load_weights(r)?;
        }
        std::fs::create_dir_all(&self.out).with_context(|| format!("creating {}", self.out.display()))?;
        let ck = self.checkpoint_path();
        let mut history = History::new(self.model.name(), &self.config);
        let result = network.train(data, &self.config, &mut history, Some(&ck), |h| h.save(&self.out));
        history.save(&self.out)?;
        if let Err(e) = result {
            let kept = if history.epochs.is_empty() {
                "no checkpoint was written".to_string()
            } else {
                format!(
                    "the checkpoint of epoch {} is kept in {}",
                    history.epochs.len() - 1,
                    ck.display()
                )
            };
            return Err(e.context(kept));
        }
        if history.epochs.is_empty() {
            network.save(&ck)?;
        }
        let evaluation = network.evaluate(data, self.config.batch_size)?;
        let mut plots = Vec::new();
        if !history.batches.is_empty() {
            plots.extend(plot::loss_curve(&history)?.save(&self.out, "loss")?);
            plots.extend(plot::epoch_metrics(&history)?.save(&self.out, "metrics")?);
        }
        if let Some(c) = evaluation.confusion {
            plots.extend(plot::confusion_matrix(&c)?.save(&self.out, "confusion")?);
            plots.extend(plot::roc_from_scores(&evaluation.scores, &evaluation.labels)?.save(&self.out, "roc")?);
        }
        std::fs::write(&key_file, serde_json::to_string_pretty(&key)?)
            .with_context(|| format!("writing {}", key_file.display()))?;
        Ok(Outcome {
            network,
            history,
            evaluation,
            checkpoint: ck,
            plots,
            reused: false,
        })
    }
}

/// What a finished [`Experiment`] left.
pub struct Outcome {
    /// The trained network.
    pub network: Network,
    /// Every batch's loss and every epoch's validation metrics.
    pub history: History,
    /// The final network on the validation split (per-image scores included).
    pub evaluation: Evaluation,
    /// Where the weights were saved.
    pub checkpoint: PathBuf,
    /// The plot files written (SVG and PNG).
    pub plots: Vec<PathBuf>,
    /// Whether [`Experiment::run_or_reuse`] loaded a finished run instead of training.
    pub reused: bool,
}
