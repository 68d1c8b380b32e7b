//! The `palm-cnn data ...` subcommands, ready to be nested in the main CLI:
//!
//! ```ignore
//! #[derive(clap::Subcommand)]
//! enum Command {
//!     /// Data tools.
//!     #[command(subcommand)]
//!     Data(palm_cnn::data::cli::DataCommand),
//! }
//! // ... Command::Data(cmd) => cmd.run()?,
//! ```

use std::path::PathBuf;

use super::palm::OpenOptions;
use super::synth::{generate_with, parse_size, LesionMasks, SynthOptions, DEFAULT_SEED, MASKS_DIR};

/// Data subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DataCommand {
    /// Generate the synthetic iChallenge-PM stand-in (the real layout and names).
    Synth {
        /// Output folder (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Seed; the same seed gives the same set.
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
        /// Image size WxH for every image (e.g. 256x248); default: the real
        /// sizes' mix (2124x2056 and 1444x1444).
        #[arg(long, value_parser = parse_size_arg)]
        size: Option<(usize, usize)>,
        /// Also write the course's archives (training.zip, validation.zip, valid_gt.zip).
        #[arg(long)]
        zips: bool,
        /// Also write each pathologic validation image's lesion mask (PNG, 255 on the
        /// lesions, the photo's size) into `PALM-Validation-Masks/`, for `explain
        /// --lesion-share`.
        #[arg(long)]
        masks: bool,
    },
    /// Print the default data folder: `$PALM_DATA`, else the cached synthetic set (generated
    /// first if it is not there yet). Scripts use it to train other frameworks on the same
    /// images.
    Path,
    /// Report what a data folder holds and every problem in it.
    Inspect {
        /// The data folder (default: `$PALM_DATA` or the cached synthetic set).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

fn parse_size_arg(s: &str) -> Result<(usize, usize), String> {
    parse_size(s).map_err(|e| e.to_string())
}

impl DataCommand {
    /// Runs the subcommand, printing to stdout.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            DataCommand::Synth {
                out,
                seed,
                size,
                zips,
                masks,
            } => {
                let t = std::time::Instant::now();
                let opts = SynthOptions {
                    seed,
                    size,
                    with_zips: zips,
                    progress: true,
                    ..SynthOptions::default()
                };
                let s = generate_with(&out, &opts)?;
                println!(
                    "wrote {} training and {} validation images ({} positive){} to {} in {:.1} s",
                    s.train,
                    s.valid,
                    s.valid_positives,
                    if s.zips { " and the three zips" } else { "" },
                    s.out_dir.display(),
                    t.elapsed().as_secs_f64()
                );
                if masks {
                    let dir = out.join(MASKS_DIR);
                    let n = LesionMasks::new(&opts).write_pngs(&dir)?;
                    println!("wrote {n} lesion masks to {}", dir.display());
                }
                Ok(())
            }
            DataCommand::Path => {
                println!("{}", super::synth::default_data_dir()?.display());
                Ok(())
            }
            DataCommand::Inspect { data } => {
                let root = match data {
                    Some(p) => p,
                    None => super::synth::default_data_dir()?,
                };
                let rep = super::inspect::inspect_with(&root, OpenOptions::default(), true);
                println!("{rep}");
                if rep.is_ok() {
                    Ok(())
                } else {
                    anyhow::bail!("{} problem(s) in {}", rep.problems.len(), root.display())
                }
            }
        }
    }
}
