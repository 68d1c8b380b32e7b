//! palm-cnn: the image-classification chapter of PaddlePaddle's course "零基础入门深度学习"
//! in Rust on dfdx 0.13 — LeNet, AlexNet, VGG-16, GoogLeNet and ResNet-50 screening fundus
//! photographs for pathologic myopia (iChallenge-PM), and LeNet on handwritten digits.
//!
//! - [`ops`]: convolution, pooling, batch-normalisation and concatenation kernels with forward
//!   and backward passes, as custom
//!   autodiff ops on dfdx's tape (dfdx 0.13 has none on stable Rust).
//! - [`nn`]: layers built on them that check their shapes when the program is built.
//! - [`models`]: the course's networks, and the [`network!`] macro they are written with.
//! - [`summary`]: layer-shape tables.
//! - [`bench`](mod@bench): training and evaluation throughput.
//! - [`data`]: the course's data layout, the synthetic stand-in, MNIST.
//! - [`train`], [`metrics`], [`checkpoint`], [`plot`]: the training loop, its metrics,
//!   safetensors checkpoints and figures.
//! - [`network`](mod@network): any model behind one non-generic type ([`network::Network`]).
//! - [`experiment`]: one training run from data to run folder ([`experiment::Experiment`]).
//! - [`notebook`]: what the evcxr notebooks need beyond that (quick mode, image grids).
#![warn(missing_docs)]

/// dfdx, re-exported so that notebooks and users see the version this crate is built on.
pub use dfdx;

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod experiment;
pub mod explain;
pub mod metrics;
pub mod models;
pub mod network;
pub mod nn;
pub mod notebook;
pub mod ops;
pub mod optim;
pub mod plot;
pub mod summary;
pub mod train;
