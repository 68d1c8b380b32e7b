//! Layers that fit dfdx 0.13's module system and check their shapes when the program is built.
//!
//! Each layer spells out the sizes the type system cannot compute on stable Rust (a convolution's
//! output height and width, a flatten's length) as const parameters, and checks them with
//! `const { assert!(..) }`-style blocks when its `forward` is instantiated. A wrong size is then a
//! `cargo build` (and `cargo test`) error naming the layer kind, the declared size and the size
//! the input actually gives; `cargo check` does not evaluate those blocks.
//!
//! The layers mix freely with dfdx's own modules in tuples:
//!
//! ```
//! use dfdx::prelude::*;
//! use palm_cnn::nn::{Conv2d, Flatten, Linear, MaxPool2d, ReLU};
//!
//! type Tiny = (
//!     Conv2d<1, 4, 3, 1, 1, 8, 8>, // 1×8×8 → 4×8×8
//!     ReLU,
//!     MaxPool2d<2, 2, 4, 4>,       // → 4×4×4
//!     Flatten<64>,
//!     Linear<64, 2>,
//! );
//! let dev = Cpu::default();
//! let model = dev.build_module::<Tiny, f32>();
//! let y = model.forward(dev.zeros::<Rank4<3, 1, 8, 8>>());
//! assert_eq!(y.shape().concrete(), [3, 2]);
//! assert_eq!(model.num_trainable_params(), 4 * 9 + 4 + 64 * 2 + 2);
//! ```

mod activation;
mod batch_norm;
mod conv;
mod dropout;
mod flatten;
mod fresh_ids;
mod identity;
pub mod init;
mod linear;
mod pool;
pub mod shape_check;

pub use activation::{ReLU, Sigmoid};
pub use batch_norm::BatchNorm2d;
pub use conv::{Conv2d, Conv2dNoBias};
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use fresh_ids::fresh_ids;
pub use identity::Identity;
pub use init::{reinit, Init};
pub use linear::Linear;
pub use pool::{AvgPool2d, GlobalAvgPool, MaxPool2d};
