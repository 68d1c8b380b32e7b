//! The `palm-cnn` command.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dfdx::prelude::*;
use palm_cnn::bench::{self, BenchConfig};
use palm_cnn::checkpoint::{self, Checkpoint};
use palm_cnn::data::{self, LoadOptions, PalmLoader};
use palm_cnn::models::{AlexNet, LeNetMnist, LeNetPalm, ModelKind};
use palm_cnn::train::{
    self, BatchSource, Evaluation, History, InMemory, OptimizerKind, PalmShape, PalmSource, TrainConfig, Trainable,
};
use std::path::{Path, PathBuf};

const EXAMPLES: &str = "\
Examples:
  palm-cnn                                   # AlexNet, course recipe, synthetic data
  palm-cnn train --model lenet-palm --epochs 2 --out runs/lenet
  palm-cnn train --model lenet-mnist --optimizer adam --lr 0.001
  palm-cnn train --model alexnet --data /path/to/PALM --augment
  palm-cnn eval --checkpoint runs/alexnet/model.safetensors
  palm-cnn predict --checkpoint runs/alexnet/model.safetensors P0001.jpg N0012.jpg
  palm-cnn summary --model alexnet
  palm-cnn bench --steps 5
  palm-cnn data synth --out /tmp/palm --size 256x256";

/// Classic CNNs (LeNet, AlexNet) for pathologic-myopia screening on iChallenge-PM, on dfdx.
///
/// With no subcommand, runs the main job: AlexNet trained with the course's recipe (Adam,
/// lr 0.001, 5 epochs, batch 10) on the built-in synthetic data, into runs/alexnet.
#[derive(Parser)]
#[command(version, about, long_about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Parser, Clone)]
struct TrainArgs {
    /// lenet-mnist, lenet-palm or alexnet.
    #[arg(long, default_value = "alexnet")]
    model: ModelKind,
    /// iChallenge-PM folder (default: $PALM_DATA or the cached synthetic set). Ignored for
    /// lenet-mnist, which uses the built-in 5,000 digits.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Epochs (course: 5).
    #[arg(long)]
    epochs: Option<usize>,
    /// Images per batch (course: 10).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate (course: 0.001).
    #[arg(long)]
    lr: Option<f64>,
    /// adam or momentum (course: momentum for LeNet, adam for AlexNet).
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerKind>,
    /// Momentum coefficient of `--optimizer momentum`.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// L2 weight decay added to the gradient (Paddle's weight_decay).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Seed of initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Run folder: model.safetensors, metrics.csv, metrics.json (default: runs/<model>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Augment training images (flips, rotation, crop, brightness, contrast).
    #[arg(long)]
    augment: bool,
    /// Use at most this many training and validation samples each (a seeded subset).
    #[arg(long)]
    limit: Option<usize>,
    /// Continue from this checkpoint instead of a fresh initialisation.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// No progress bar and no per-batch lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Trains a model; writes model.safetensors (after every epoch), metrics.csv, metrics.json.
    ///
    /// Example: palm-cnn train --model lenet-palm --epochs 2 --out runs/lenet
    Train(TrainArgs),
    /// Evaluates a checkpoint on the validation split (MNIST: the built-in test digits).
    ///
    /// Example: palm-cnn eval --checkpoint runs/alexnet/model.safetensors
    Eval {
        /// The checkpoint (its metadata names the model).
        #[arg(long)]
        checkpoint: PathBuf,
        /// iChallenge-PM folder (default: $PALM_DATA or the cached synthetic set).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Images per batch.
        #[arg(long, default_value_t = 10)]
        batch_size: usize,
        /// Use at most this many samples (a seeded subset).
        #[arg(long)]
        limit: Option<usize>,
        /// Also write the evaluation (with per-image scores) as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Prints the probability of pathologic myopia for each image (fundus models).
    ///
    /// Example: palm-cnn predict --checkpoint runs/alexnet/model.safetensors P0001.jpg
    Predict {
        /// The checkpoint (its metadata names the model).
        #[arg(long)]
        checkpoint: PathBuf,
        /// JPEG or PNG fundus photos.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Prints a model's layer-shape table (layer, output shape, parameters).
    ///
    /// Example: palm-cnn summary --model lenet-mnist --batch 3
    Summary {
        /// lenet-mnist, lenet-palm or alexnet.
        #[arg(long)]
        model: ModelKind,
        /// Batch size of the random input whose shapes are shown (the course uses 3).
        #[arg(long, default_value_t = 3)]
        batch: usize,
        /// Print HTML instead of text.
        #[arg(long)]
        html: bool,
    },
    /// Measures training (forward + backward + Adam) and evaluation throughput of LeNet-PALM and
    /// AlexNet on random 3×224×224 batches.
    ///
    /// Example: palm-cnn bench --steps 5 --json bench.json
    Bench {
        /// Images per batch.
        #[arg(long, default_value_t = 10)]
        batch: usize,
        /// Timed training steps and evaluation batches per model.
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Writes a seeded random input batch and the checkpoint's logits for it (tensors `input`,
    /// `logits`) as safetensors, for tools/torch_roundtrip.py.
    ///
    /// Example: palm-cnn sample --checkpoint runs/alexnet/model.safetensors --out sample.safetensors
    Sample {
        /// The checkpoint (its metadata names the model).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Inputs in the batch.
        #[arg(long, default_value_t = 2)]
        batch: usize,
        /// Seed of the random input (uniform in [-1, 1]).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Data tools: generate the synthetic set, inspect a data folder.
    #[command(subcommand)]
    Data(data::cli::DataCommand),
}

fn run_bench(batch: usize, steps: usize, json: Option<&std::path::Path>) -> Result<()> {
    anyhow::ensure!(batch > 0, "--batch must be at least 1");
    let config = BenchConfig {
        batch,
        warmup: 1,
        train_steps: steps,
        eval_batches: steps,
    };
    eprintln!(
        "benchmarking lenet-palm and alexnet: batch {batch}, {steps} timed steps each, {} threads",
        rayon::current_num_threads()
    );
    let results = bench::bench_all(config).map_err(|e| anyhow::anyhow!("benchmark failed: {e:?}"))?;
    print!("{}", bench::table(&results));
    let text = serde_json::to_string_pretty(&results)?;
    println!("{text}");
    if let Some(path) = json {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Seed of the `--limit` subsets: fixed, so `train` and `eval` pick the same samples.
const SUBSET_SEED: u64 = 0x5EED;

/// A seeded subset of at most `limit` samples, in the original order.
fn subset<T: Clone>(items: &[T], limit: Option<usize>) -> Vec<T> {
    let seed = SUBSET_SEED;
    match limit {
        Some(l) if l < items.len() => {
            let mut idx = data::epoch_order(items.len(), seed, u64::MAX)[..l].to_vec();
            idx.sort_unstable();
            idx.into_iter().map(|i| items[i].clone()).collect()
        }
        _ => items.to_vec(),
    }
}

fn palm_root(data: Option<&Path>) -> Result<PathBuf> {
    match data {
        Some(p) => Ok(p.to_path_buf()),
        None => Ok(data::default_data_dir().context("preparing the synthetic data set")?),
    }
}

/// Training and validation loaders of the PALM set.
fn palm_loaders(
    data: Option<&Path>,
    limit: Option<usize>,
    augment: bool,
    progress: bool,
) -> Result<(PalmLoader<224>, PalmLoader<224>)> {
    let root = palm_root(data)?;
    let ds = data::open(&root).with_context(|| format!("opening {}", root.display()))?;
    let opts = LoadOptions {
        augment: augment.then(data::Augment::default),
        progress,
        ..LoadOptions::default()
    };
    let train = PalmLoader::from_samples(subset(&ds.train.samples, limit), opts.clone());
    let valid = PalmLoader::from_samples(subset(&ds.valid.samples, limit), LoadOptions { augment: None, ..opts });
    train.preload()?;
    valid.preload()?;
    Ok((train, valid))
}

fn mnist_sets(limit: Option<usize>) -> Result<(InMemory<MnistShape, 10>, InMemory<MnistShape, 10>)> {
    let (tr, te) = data::mnist::builtin_split()?;
    let cut = |m: &data::mnist::Mnist| -> Result<InMemory<MnistShape, 10>> {
        let idx = subset(&(0..m.len()).collect::<Vec<_>>(), limit);
        let images = idx.iter().flat_map(|&i| m.image(i).to_vec()).collect();
        let labels = idx.iter().map(|&i| m.labels[i]).collect();
        Ok(InMemory::from_mnist(&data::mnist::Mnist { images, labels }))
    };
    Ok((cut(&tr)?, cut(&te)?))
}

type MnistShape = (usize, Const<1>, Const<28>, Const<28>);

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "n/a".into())
}

fn train_model<M, S, const C: usize>(
    mut model: M,
    kind: ModelKind,
    dev: &Cpu,
    tr: &dyn BatchSource<S, C>,
    va: &dyn BatchSource<S, C>,
    cfg: &TrainConfig,
    args: &TrainArgs,
) -> Result<()>
where
    M: Trainable<S, C>,
    S: Shape,
{
    if let Some(r) = &args.resume {
        checkpoint::load(&mut model, kind, r)?;
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(kind.name()));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let ck = out.join("model.safetensors");
    if cfg.verbose {
        eprintln!(
            "training {kind} on {} images, validating on {}: {:?} lr {}, {} epochs, batch {}, seed {} -> {}",
            tr.len(),
            va.len(),
            cfg.optimizer,
            cfg.lr,
            cfg.epochs,
            cfg.batch_size,
            cfg.seed,
            out.display()
        );
    }
    let mut history = History::new(kind.name(), cfg);
    let result = train::train(&mut model, dev, tr, va, cfg, &mut history, |m, h| {
        checkpoint::save(m, kind, &ck)?;
        h.save(&out)
    });
    history.save(&out)?;
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
    write_plots(&history, &out)?;
    if C == 1 && !history.epochs.is_empty() {
        let ev = train::evaluate(&model, dev, va, cfg.batch_size)?;
        for p in palm_cnn::plot::roc_from_scores(&ev.scores, &ev.labels)?.save(&out, "roc")? {
            println!("plot: {}", p.display());
        }
    }
    match history.epochs.last() {
        Some(e) => println!(
            "done: {kind}, {} epochs, validation accuracy {:.4}, AUC {}, loss {:.4}; checkpoint {}",
            history.epochs.len(),
            e.val_accuracy,
            fmt_opt(e.val_auc),
            e.val_loss,
            ck.display()
        ),
        None => {
            checkpoint::save(&model, kind, &ck)?;
            println!("done: 0 epochs; checkpoint {}", ck.display());
        }
    }
    Ok(())
}

fn write_plots(history: &History, out: &Path) -> Result<()> {
    use palm_cnn::plot;
    let mut figs = vec![
        ("loss", plot::loss_curve(history)?),
        ("metrics", plot::epoch_metrics(history)?),
    ];
    if let Some(c) = history.epochs.last().and_then(|e| e.val_confusion) {
        figs.push(("confusion", plot::confusion_matrix(&c)?));
    }
    for (stem, fig) in figs {
        for p in fig.save(out, stem)? {
            println!("plot: {}", p.display());
        }
    }
    Ok(())
}

fn run_train(args: &TrainArgs) -> Result<()> {
    let kind = args.model;
    let mut cfg = TrainConfig::course(kind);
    cfg.seed = args.seed;
    cfg.momentum = args.momentum;
    cfg.weight_decay = args.weight_decay;
    cfg.verbose = !args.quiet;
    if let Some(v) = args.epochs {
        cfg.epochs = v;
    }
    if let Some(v) = args.batch_size {
        anyhow::ensure!(v > 0, "--batch-size must be at least 1");
        cfg.batch_size = v;
    }
    if let Some(v) = args.lr {
        anyhow::ensure!(v > 0.0 && v.is_finite(), "--lr must be a positive number");
        cfg.lr = v;
    }
    if let Some(v) = args.optimizer {
        cfg.optimizer = v;
    }
    let dev = Cpu::seed_from_u64(cfg.seed);
    match kind {
        ModelKind::LeNetMnist => {
            let (tr, va) = mnist_sets(args.limit)?;
            train_model(dev.build_module::<LeNetMnist, f32>(), kind, &dev, &tr, &va, &cfg, args)
        }
        ModelKind::LeNetPalm | ModelKind::AlexNet => {
            let (tr, va) = palm_loaders(args.data.as_deref(), args.limit, args.augment, cfg.verbose)?;
            let (tr, va) = (PalmSource(&tr), PalmSource(&va));
            if kind == ModelKind::AlexNet {
                train_model(dev.build_module::<AlexNet, f32>(), kind, &dev, &tr, &va, &cfg, args)
            } else {
                train_model(dev.build_module::<LeNetPalm, f32>(), kind, &dev, &tr, &va, &cfg, args)
            }
        }
    }
}

fn eval_with<M: Trainable<S, C>, S: Shape, const C: usize>(
    mut model: M,
    kind: ModelKind,
    path: &Path,
    dev: &Cpu,
    src: &dyn BatchSource<S, C>,
    batch: usize,
) -> Result<Evaluation> {
    checkpoint::load(&mut model, kind, path)?;
    train::evaluate(&model, dev, src, batch)
}

fn run_eval(
    checkpoint: &Path,
    data: Option<&Path>,
    batch: usize,
    limit: Option<usize>,
    json: Option<&Path>,
) -> Result<()> {
    anyhow::ensure!(batch > 0, "--batch-size must be at least 1");
    let kind = Checkpoint::read(checkpoint)?.model_kind()?;
    let dev = Cpu::seed_from_u64(0);
    let ev = match kind {
        ModelKind::LeNetMnist => {
            let (_, te) = mnist_sets(limit)?;
            eval_with(
                dev.build_module::<LeNetMnist, f32>(),
                kind,
                checkpoint,
                &dev,
                &te,
                batch,
            )?
        }
        ModelKind::LeNetPalm | ModelKind::AlexNet => {
            let (_, va) = palm_loaders(data, limit, false, false)?;
            let va = PalmSource(&va);
            if kind == ModelKind::AlexNet {
                eval_with(dev.build_module::<AlexNet, f32>(), kind, checkpoint, &dev, &va, batch)?
            } else {
                eval_with(dev.build_module::<LeNetPalm, f32>(), kind, checkpoint, &dev, &va, batch)?
            }
        }
    };
    println!("[validation] accuracy/loss: {:.4}/{:.4}", ev.accuracy, ev.loss);
    if let Some(c) = ev.confusion {
        println!(
            "{kind}: {} images, AUC {}, sensitivity {}, specificity {}, confusion [tn fp; fn tp] = [{} {}; {} {}]",
            ev.samples,
            fmt_opt(ev.auc),
            fmt_opt(ev.sensitivity),
            fmt_opt(ev.specificity),
            c.tn,
            c.fp,
            c.fn_,
            c.tp
        );
    } else {
        println!("{kind}: {} images", ev.samples);
    }
    if let Some(p) = json {
        std::fs::write(p, serde_json::to_string_pretty(&ev)?).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn predict_with<M: Trainable<PalmShape, 1>>(
    mut model: M,
    kind: ModelKind,
    path: &Path,
    images: &[PathBuf],
) -> Result<()> {
    checkpoint::load(&mut model, kind, path)?;
    let dev = Cpu::default();
    for img in images {
        let raw = std::fs::read(img).with_context(|| format!("reading {}", img.display()))?;
        let chw = data::image::decode_to_chw(
            &raw,
            img,
            224,
            data::DecodeMode::default(),
            data::ChannelOrder::default(),
        )?;
        let x: Vec<f32> = chw.iter().map(|&b| data::transform::normalize(b)).collect();
        let logits = model
            .try_forward(dev.tensor_from_vec(x, (1, Const::<3>, Const::<224>, Const::<224>)))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let (p, _) = train::scores_of(&logits);
        println!("{}\t{:.6}", img.display(), p[0]);
    }
    Ok(())
}

fn run_predict(checkpoint: &Path, images: &[PathBuf]) -> Result<()> {
    let kind = Checkpoint::read(checkpoint)?.model_kind()?;
    let dev = Cpu::default();
    match kind {
        ModelKind::AlexNet => predict_with(dev.build_module::<AlexNet, f32>(), kind, checkpoint, images),
        ModelKind::LeNetPalm => predict_with(dev.build_module::<LeNetPalm, f32>(), kind, checkpoint, images),
        ModelKind::LeNetMnist => anyhow::bail!(
            "{}: predict is for the fundus models (lenet-palm, alexnet), this is {kind}",
            checkpoint.display()
        ),
    }
}

fn sample_with<M: Trainable<S, C>, S: train::BatchShape, const C: usize>(
    mut model: M,
    kind: ModelKind,
    ck: &Path,
    out: &Path,
    batch: usize,
    seed: u64,
) -> Result<()> {
    checkpoint::load(&mut model, kind, ck)?;
    let set = InMemory::<S, C>::random(batch, seed);
    let dev = Cpu::default();
    let mut b = set.batches(&dev, batch, None)?;
    let x = b.next().context("empty batch")??.images;
    let in_shape: Vec<usize> = x.shape().concrete().into_iter().collect();
    let logits = model.try_forward(x.clone()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let meta = [(checkpoint::MODEL_KEY.to_string(), kind.name().to_string())]
        .into_iter()
        .collect();
    checkpoint::write_tensors(
        out,
        &[
            ("input", in_shape, x.as_vec()),
            ("logits", vec![batch, C], logits.as_vec()),
        ],
        &meta,
    )?;
    println!("wrote {} ({kind}, batch {batch})", out.display());
    Ok(())
}

fn run_sample(ck: &Path, out: &Path, batch: usize, seed: u64) -> Result<()> {
    anyhow::ensure!(batch > 0, "--batch must be at least 1");
    let kind = Checkpoint::read(ck)?.model_kind()?;
    let dev = Cpu::default();
    match kind {
        ModelKind::LeNetMnist => {
            sample_with::<_, MnistShape, 10>(dev.build_module::<LeNetMnist, f32>(), kind, ck, out, batch, seed)
        }
        ModelKind::LeNetPalm => {
            sample_with::<_, PalmShape, 1>(dev.build_module::<LeNetPalm, f32>(), kind, ck, out, batch, seed)
        }
        ModelKind::AlexNet => {
            sample_with::<_, PalmShape, 1>(dev.build_module::<AlexNet, f32>(), kind, ck, out, batch, seed)
        }
    }
}

fn main() {
    palm_cnn::ops::retain_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Train(args)) => run_train(&args),
        Some(Command::Eval {
            checkpoint,
            data,
            batch_size,
            limit,
            json,
        }) => run_eval(&checkpoint, data.as_deref(), batch_size, limit, json.as_deref()),
        Some(Command::Predict { checkpoint, images }) => run_predict(&checkpoint, &images),
        Some(Command::Summary { model, batch, html }) => {
            let summary = model.summary(batch);
            if html {
                println!("{}", summary.to_html());
            } else {
                println!("{summary}");
            }
            Ok(())
        }
        Some(Command::Bench { batch, steps, json }) => run_bench(batch, steps, json.as_deref()),
        Some(Command::Sample {
            checkpoint,
            out,
            batch,
            seed,
        }) => run_sample(&checkpoint, &out, batch, seed),
        Some(Command::Data(cmd)) => cmd.run(),
        None => {
            let args = TrainArgs::parse_from(["train"]);
            run_train(&args)
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
