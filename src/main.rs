//! The `palm-cnn` command.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use palm_cnn::bench::{self, BenchConfig};
use palm_cnn::models::ModelKind;

/// Classic CNNs (LeNet, AlexNet) for pathologic-myopia screening on iChallenge-PM, on dfdx.
///
/// With no subcommand, runs the main job.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
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
}

fn run_bench(batch: usize, steps: usize, json: Option<&std::path::Path>) -> Result<()> {
    anyhow::ensure!(batch > 0, "--batch must be at least 1");
    let config = BenchConfig { batch, warmup: 1, train_steps: steps, eval_batches: steps };
    eprintln!("benchmarking lenet-palm and alexnet: batch {batch}, {steps} timed steps each, {} threads", rayon::current_num_threads());
    let results = bench::bench_all(config).map_err(|e| anyhow::anyhow!("benchmark failed: {e:?}"))?;
    print!("{}", bench::table(&results));
    let text = serde_json::to_string_pretty(&results)?;
    println!("{text}");
    if let Some(path) = json {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
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
        // Until the training loop lands, the main job benchmarks AlexNet's course recipe
        // (Adam, batch 10) on random data.
        None => run_bench(10, 3, None),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
