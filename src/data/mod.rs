//! Data loaders (iChallenge-PM, MNIST) and the synthetic stand-in.
//!
//! - [`palm`]: find the course's iChallenge-PM layout (folders or the course's
//!   zips, nested zip included; labels from `labels.csv` or the xlsx) —
//!   [`open`] / [`open_with`].
//! - [`loader`]: [`PalmLoader`] turns a [`Split`] into dfdx batches
//!   ([`ImageBatch`], [`LabelBatch`]) with the course's exact transform
//!   ([`transform`]), a memory cache and an optional disk cache.
//! - [`image`]: JPEG/PNG decoding, optionally DCT-scaled ([`DecodeMode`]); the
//!   1/8 and 1/4 scales of common JPEGs go through a dedicated fast decoder.
//! - [`augment`]: seeded training augmentation ([`Augment`]), off by default.
//! - [`synth`]: the synthetic stand-in set ([`synth::generate`],
//!   [`default_data_dir`]).
//! - [`mnist`]: the shipped 5,000-digit MNIST subset and an IDX reader.
//! - [`inspect()`]: a report of what a data folder holds and every problem in it.
//! - [`cli`]: the `palm-cnn data ...` subcommands.
//!
//! # Example
//! ```no_run
//! use palm_cnn::data::{self, LoadOptions, PalmLoader};
//! let root = data::default_data_dir()?;          // synthetic set, generated once
//! let ds = data::open(&root)?;
//! let dev = dfdx::tensor::Cpu::default();
//! let train = PalmLoader::<224>::new(&ds.train, LoadOptions::default());
//! for epoch in 0..2 {
//!     for batch in train.train_epoch(&dev, 10, 42, epoch)? {
//!         let (images, labels) = batch?;     // (10, 3, 224, 224), (10, 1)
//!         # let _ = (images, labels);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod archive;
pub mod augment;
pub mod cli;
pub mod error;
pub mod image;
pub mod inspect;
pub mod jpeg_scaled;
pub mod loader;
pub mod mnist;
pub mod palm;
pub mod synth;
pub mod transform;

pub use augment::Augment;
pub use error::DataError;
pub use image::DecodeMode;
pub use inspect::{inspect, inspect_with, InspectReport};
pub use loader::{epoch_order, Batches, ImageBatch, LabelBatch, LoadOptions, PalmLoader};
pub use palm::{open, open_with, LabelsChoice, LabelsFrom, OpenOptions, PalmDataset, Prefer, Sample, Split, SplitKind};
pub use synth::{default_data_dir, SynthOptions};
pub use transform::ChannelOrder;
