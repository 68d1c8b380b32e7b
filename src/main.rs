//! The `palm-cnn` command.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use palm_cnn::bench::{self, BenchConfig};
use palm_cnn::checkpoint;
use palm_cnn::data::{self, DecodeMode};
use palm_cnn::experiment::Experiment;
use palm_cnn::models::ModelKind;
use palm_cnn::network::{Datasets, Network};
use palm_cnn::nn::Init;
use palm_cnn::train::{OptimizerKind, TrainConfig};
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
    /// lenet-mnist, lenet-palm, lenet-palm-relu, alexnet, vgg16, googlenet or resnet50.
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
    /// L2 weight decay added to the gradient (Paddle's weight_decay; course: 0.001 for
    /// ResNet-50, none for the others; 0 turns it off).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Seed of initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Weight initialisation: paddle (the course's framework: conv N(0, sqrt(2/fan_in)),
    /// linear Xavier-uniform, biases 0) or pytorch (uniform +-1/sqrt(fan_in)).
    #[arg(long, value_enum, default_value_t = Init::Paddle)]
    init: Init,
    /// Run folder: model.safetensors, metrics.csv, metrics.json (default: runs/<model>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Augment training images (flips, rotation, crop, brightness, contrast).
    #[arg(long)]
    augment: bool,
    /// Use at most this many training and validation samples each (a seeded subset).
    #[arg(long)]
    limit: Option<usize>,
    /// JPEG decoding: fast (at a reduced DCT scale, then resize) or exact (full size, then
    /// resize: the course's cv2.imread + cv2.resize path).
    #[arg(long, value_enum, default_value_t = DecodeMode::Fast)]
    decode: DecodeMode,
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
    /// Grad-CAM: for each fundus photo, writes `<stem>_gradcam.png` into `--out`: the photo as
    /// the network sees it beside the class-activation map of its last convolutional stage
    /// (what raises the pathologic-myopia logit). With `--lesion-share` instead: over the
    /// synthetic set's pathologic validation photos, how much of the map falls on the lesions
    /// the generator drew, against the share expected by chance.
    ///
    /// Example: palm-cnn explain --checkpoint runs/alexnet/model.safetensors --out gradcam P0001.jpg
    Explain {
        /// The checkpoint (its metadata names the model).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Folder for the PNGs.
        #[arg(long, default_value = "gradcam")]
        out: PathBuf,
        /// The layer to map (a name from `summary`; default: the last convolutional stage).
        #[arg(long)]
        layer: Option<String>,
        /// Report the lesion share on the validation set instead of writing PNGs.
        #[arg(long)]
        lesion_share: bool,
        /// With --lesion-share: the synthetic set (default: $PALM_DATA or the cached set); its
        /// masks come from `PALM-Validation-Masks/` (`data synth --masks`) or are re-rendered
        /// for the cached set.
        #[arg(long)]
        data: Option<PathBuf>,
        /// With --lesion-share: use at most this many pathologic photos (in order).
        #[arg(long)]
        limit: Option<usize>,
        /// With --lesion-share: also write the per-photo shares as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// JPEG or PNG fundus photos.
        #[arg(required_unless_present = "lesion_share")]
        images: Vec<PathBuf>,
    },
    /// Prints a model's layer-shape table (layer, output shape, parameters).
    ///
    /// Example: palm-cnn summary --model lenet-mnist --batch 3
    Summary {
        /// lenet-mnist, lenet-palm, lenet-palm-relu, alexnet, vgg16, googlenet or resnet50.
        #[arg(long)]
        model: ModelKind,
        /// Batch size of the random input whose shapes are shown (the course uses 3).
        #[arg(long, default_value_t = 3)]
        batch: usize,
        /// Print HTML instead of text.
        #[arg(long)]
        html: bool,
    },
    /// Measures training (forward + backward + Adam) and evaluation throughput on random
    /// 3×224×224 batches (default: LeNet-PALM and AlexNet; `--models vgg16 googlenet resnet50`).
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
        /// The models to benchmark (any fundus model).
        #[arg(long, num_args = 1.., default_values = ["lenet-palm", "alexnet"])]
        models: Vec<ModelKind>,
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
    /// Trains a checkpoint for a number of optimizer steps on batches given in a file, in order,
    /// and writes the losses and the updated weights: the training step on fixed batches, for
    /// comparing it with another framework (tools/step_parity.py).
    ///
    /// Example: palm-cnn steps --checkpoint init.safetensors --batches batches.safetensors --optimizer adam --steps 50 --out after.safetensors
    Steps {
        /// The starting weights (its metadata names the model; `drop1.p = 0` turns dropout off).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Safetensors with `images` ([N, C, H, W], F32, already normalised) and `labels` ([N],
        /// F32 class numbers).
        #[arg(long)]
        batches: PathBuf,
        /// adam or momentum.
        #[arg(long, value_enum)]
        optimizer: OptimizerKind,
        /// Learning rate.
        #[arg(long, default_value_t = 0.001)]
        lr: f64,
        /// Momentum coefficient of `--optimizer momentum`.
        #[arg(long, default_value_t = 0.9)]
        momentum: f64,
        /// L2 weight decay added to the gradient.
        #[arg(long)]
        weight_decay: Option<f64>,
        /// Images per batch.
        #[arg(long, default_value_t = 10)]
        batch_size: usize,
        /// Optimizer steps (the batches are cycled).
        #[arg(long)]
        steps: usize,
        /// Where to write the updated weights; the losses go to stdout as JSON.
        #[arg(long)]
        out: PathBuf,
    },
    /// Data tools: generate the synthetic set, inspect a data folder.
    #[command(subcommand)]
    Data(data::cli::DataCommand),
}

fn run_bench(batch: usize, steps: usize, models: &[ModelKind], json: Option<&std::path::Path>) -> Result<()> {
    anyhow::ensure!(batch > 0, "--batch must be at least 1");
    let config = BenchConfig {
        batch,
        warmup: 1,
        train_steps: steps,
        eval_batches: steps,
    };
    eprintln!(
        "benchmarking {}: batch {batch}, {steps} timed steps each, {} threads",
        models.iter().map(|m| m.name()).collect::<Vec<_>>().join(", "),
        rayon::current_num_threads()
    );
    let results = models
        .iter()
        .map(|&kind| Network::new(kind, 0).bench(config))
        .collect::<Result<Vec<_>>>()?;
    print!("{}", bench::table(&results));
    let text = serde_json::to_string_pretty(&results)?;
    println!("{text}");
    if let Some(path) = json {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn run_steps(checkpoint: &Path, batches: &Path, cfg: &TrainConfig, steps: usize, out: &Path) -> Result<()> {
    let mut net = Network::load(checkpoint)?;
    let file = checkpoint::Checkpoint::read(batches)?;
    let (_, images) = file.f32_tensor("images")?;
    let (_, labels) = file.f32_tensor("labels")?;
    let labels = labels.iter().map(|&l| l.round().max(0.0) as usize).collect();
    let losses = net.train_steps(images, labels, cfg, steps)?;
    net.save(out)?;
    println!("{}", serde_json::json!({ "losses": losses }));
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "n/a".into())
}

fn run_train(args: &TrainArgs) -> Result<()> {
    let kind = args.model;
    let mut exp = Experiment::course(kind);
    let cfg = &mut exp.config;
    cfg.seed = args.seed;
    cfg.init = args.init;
    cfg.momentum = args.momentum;
    // Unset keeps the course's recipe (ResNet-50: 0.001); `--weight-decay 0` turns it off.
    if let Some(v) = args.weight_decay {
        anyhow::ensure!(v >= 0.0 && v.is_finite(), "--weight-decay must be a number ≥ 0");
        cfg.weight_decay = (v > 0.0).then_some(v);
    }
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
    exp.data = args.data.clone();
    exp.limit = args.limit;
    exp.augment = args.augment;
    exp.decode = args.decode;
    exp.resume = args.resume.clone();
    if let Some(out) = &args.out {
        exp.out = out.clone();
    }
    let data = exp.load_data()?;
    let cfg = &exp.config;
    if cfg.verbose {
        eprintln!(
            "training {kind} on {} images, validating on {}: {:?} lr {}, {} epochs, batch {}, seed {}, {} init -> {}",
            data.train_len(),
            data.valid_len(),
            cfg.optimizer,
            cfg.lr,
            cfg.epochs,
            cfg.batch_size,
            cfg.seed,
            cfg.init,
            exp.out.display()
        );
    }
    let outcome = exp.run_on(&data)?;
    for p in &outcome.plots {
        println!("plot: {}", p.display());
    }
    match outcome.history.epochs.last() {
        Some(e) => println!(
            "done: {kind}, {} epochs, validation accuracy {:.4}, AUC {}, loss {:.4}; checkpoint {}",
            outcome.history.epochs.len(),
            e.val_accuracy,
            fmt_opt(e.val_auc),
            e.val_loss,
            outcome.checkpoint.display()
        ),
        None => println!("done: 0 epochs; checkpoint {}", outcome.checkpoint.display()),
    }
    Ok(())
}

fn run_eval(
    checkpoint: &Path,
    data: Option<&Path>,
    batch: usize,
    limit: Option<usize>,
    json: Option<&Path>,
) -> Result<()> {
    anyhow::ensure!(batch > 0, "--batch-size must be at least 1");
    let network = Network::load(checkpoint)?;
    let kind = network.kind();
    let data = Datasets::for_model(kind, data, limit, false, DecodeMode::default(), false)?;
    let ev = network.evaluate(&data, batch)?;
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

fn run_predict(checkpoint: &Path, images: &[PathBuf]) -> Result<()> {
    let network = Network::load(checkpoint)?;
    anyhow::ensure!(
        !network.kind().takes_digits(),
        "{}: predict is for the fundus models, this is {}",
        checkpoint.display(),
        network.kind()
    );
    for img in images {
        let p = network.predict_files(std::slice::from_ref(img))?;
        println!("{}\t{:.6}", img.display(), p[0]);
    }
    Ok(())
}

/// What `explain` is asked for.
struct ExplainArgs<'a> {
    checkpoint: &'a Path,
    out: &'a Path,
    layer: Option<&'a str>,
    lesion_share: bool,
    data: Option<&'a Path>,
    limit: Option<usize>,
    json: Option<&'a Path>,
    images: &'a [PathBuf],
}

fn run_explain(args: &ExplainArgs) -> Result<()> {
    let network = Network::load(args.checkpoint)?;
    let kind = network.kind();
    anyhow::ensure!(
        !kind.takes_digits(),
        "{}: explain is for the fundus models, this is {kind}",
        args.checkpoint.display()
    );
    if args.lesion_share {
        let root = match args.data {
            Some(p) => p.to_path_buf(),
            None => palm_cnn::data::synth::default_data_dir()?,
        };
        let masks = palm_cnn::data::synth::LesionMasks::for_data_dir(&root).with_context(|| {
            format!(
                "{} has no lesion masks: it is not the cached synthetic set and has no {}/ \
                 (generate one with `palm-cnn data synth --masks`)",
                root.display(),
                palm_cnn::data::synth::MASKS_DIR
            )
        })?;
        let data = Datasets::for_model(kind, Some(&root), None, false, DecodeMode::default(), false)?;
        let report = network.lesion_report(&data, &masks, args.layer, args.limit)?;
        println!("{kind}: {report}");
        if let Some(p) = args.json {
            std::fs::write(p, serde_json::to_string_pretty(&report)?)
                .with_context(|| format!("writing {}", p.display()))?;
        }
        return Ok(());
    }
    std::fs::create_dir_all(args.out).with_context(|| format!("creating {}", args.out.display()))?;
    for img in args.images {
        let inputs = palm_cnn::network::fundus_inputs(std::slice::from_ref(img))?;
        let explanations = network.grad_cam(&inputs, args.layer)?;
        let name = img
            .file_name()
            .map_or_else(|| img.display().to_string(), |n| n.to_string_lossy().into_owned());
        let fig = palm_cnn::explain::overlay_pairs(&format!("{kind}: Grad-CAM"), &inputs, &explanations, &[name])?;
        let stem = img
            .file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
        let png = args.out.join(format!("{stem}_gradcam.png"));
        std::fs::write(&png, fig.to_png()?).with_context(|| format!("writing {}", png.display()))?;
        println!("{}\t{:.6}\t{}", img.display(), explanations[0].score, png.display());
    }
    Ok(())
}

fn run_sample(ck: &Path, out: &Path, batch: usize, seed: u64) -> Result<()> {
    use rand::{Rng, SeedableRng};
    anyhow::ensure!(batch > 0, "--batch must be at least 1");
    let network = Network::load(ck)?;
    let kind = network.kind();
    let [c, h, w] = network.input_shape();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let input: Vec<f32> = (0..batch * c * h * w).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let logits = network.logits(&input)?;
    let meta = [(checkpoint::MODEL_KEY.to_string(), kind.name().to_string())]
        .into_iter()
        .collect();
    let classes = logits.len() / batch;
    checkpoint::write_tensors(
        out,
        &[
            ("input", vec![batch, c, h, w], input),
            ("logits", vec![batch, classes], logits),
        ],
        &meta,
    )?;
    println!("wrote {} ({kind}, batch {batch})", out.display());
    Ok(())
}

fn main() {
    palm_cnn::ops::retain_freed_memory();
    palm_cnn::ops::flush_subnormals();
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
        Some(Command::Explain {
            checkpoint,
            out,
            layer,
            lesion_share,
            data,
            limit,
            json,
            images,
        }) => run_explain(&ExplainArgs {
            checkpoint: &checkpoint,
            out: &out,
            layer: layer.as_deref(),
            lesion_share,
            data: data.as_deref(),
            limit,
            json: json.as_deref(),
            images: &images,
        }),
        Some(Command::Summary { model, batch, html }) => {
            let summary = model.summary(batch);
            if html {
                println!("{}", summary.to_html());
            } else {
                println!("{summary}");
            }
            Ok(())
        }
        Some(Command::Bench {
            batch,
            steps,
            json,
            models,
        }) => run_bench(batch, steps, &models, json.as_deref()),
        Some(Command::Sample {
            checkpoint,
            out,
            batch,
            seed,
        }) => run_sample(&checkpoint, &out, batch, seed),
        Some(Command::Steps {
            checkpoint,
            batches,
            optimizer,
            lr,
            momentum,
            weight_decay,
            batch_size,
            steps,
            out,
        }) => {
            let cfg = TrainConfig {
                lr,
                batch_size,
                optimizer,
                momentum,
                weight_decay,
                verbose: false,
                log_every: 0,
                ..TrainConfig::course(ModelKind::AlexNet)
            };
            run_steps(&checkpoint, &batches, &cfg, steps, &out)
        }
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
