//! The course's networks, one file each, and the [`network!`](macro@crate::network) macro they are
//! written with.

mod alexnet;
mod googlenet;
mod lenet;
mod resnet;
mod vgg;

pub use alexnet::AlexNet;
pub use googlenet::{GoogLeNet, Inception};
pub use lenet::{LeNetMnist, LeNetPalm, LeNetPalmRelu};
pub use resnet::{Bottleneck, ConvBn, FirstBottleneck, IdentityBottleneck, Projection, ResNet50};
pub use vgg::Vgg16;

use std::fmt;
use std::str::FromStr;

/// The registry: every model once, in the course's order. Adding a network means writing its
/// file and adding one line here; [`ModelKind`], [`crate::network::Network`] and the course's
/// recipes ([`crate::train::TrainConfig::course`]) are generated from this list.
///
/// Each line: `Variant: Type, "cli-name", input, course optimizer, course L2 weight decay,
/// [tensor => bound, …];` where `input` is `mnist` (1×28×28, 10 classes) or `palm` (3×224×224,
/// one logit), the optimizer is `Adam` or `Momentum` (learning rate 0.001, momentum 0.9, 5
/// epochs, batch 10), and the list names tensors the course starts uniform in ±bound instead of
/// PaddlePaddle's default (applied with [`crate::nn::Init::Paddle`]).
/// The list is handed to `$callback!`, which turns it into code where it is needed.
#[doc(hidden)]
#[macro_export]
macro_rules! for_each_model {
    ($callback:ident) => {
        $callback! {
            LeNetMnist: LeNetMnist, "lenet-mnist", mnist, Momentum, None, [];
            LeNetPalm: LeNetPalm, "lenet-palm", palm, Momentum, None, [];
            LeNetPalmRelu: LeNetPalmRelu, "lenet-palm-relu", palm, Momentum, None, [];
            AlexNet: AlexNet, "alexnet", palm, Adam, None, [];
            Vgg16: Vgg16, "vgg16", palm, Momentum, None, [];
            GoogLeNet: GoogLeNet, "googlenet", palm, Momentum, None, [];
            ResNet50: ResNet50, "resnet50", palm, Momentum, Some(0.001), ["out.weight" => 1.0 / 2048f64.sqrt()];
        }
    };
}

macro_rules! define_model_kind {
    ($($variant:ident: $ty:ident, $name:literal, $input:ident, $opt:ident, $wd:expr, [$($fix:literal => $bound:expr),*];)+) => {
        /// The model names every command accepts (see [`ModelKind::name`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ModelKind {
            $(
                #[doc = concat!("[`", stringify!($ty), "`], `", $name, "`.")]
                $variant,
            )+
        }

        impl ModelKind {
            /// All models, in the course's order.
            pub const ALL: &'static [ModelKind] = &[$(ModelKind::$variant),+];

            /// The command-line name (`lenet-mnist`, `alexnet`, …).
            pub fn name(self) -> &'static str {
                match self {
                    $(ModelKind::$variant => $name,)+
                }
            }

            /// Whether the model classifies MNIST digits (1×28×28, 10 classes) rather than
            /// fundus photos (3×224×224, one logit).
            pub fn takes_digits(self) -> bool {
                match self {
                    $(ModelKind::$variant => stringify!($input) == "mnist",)+
                }
            }

            /// Tensors the course starts uniform in ±bound instead of PaddlePaddle's default
            /// scheme (ResNet-50's `out.weight`: ±1/√2048).
            pub fn course_uniform_init(self) -> Vec<(&'static str, f64)> {
                match self {
                    $(ModelKind::$variant => vec![$(($fix, $bound)),*],)+
                }
            }

            /// The layer-shape summary for a random batch of `batch` inputs.
            pub fn summary(self, batch: usize) -> crate::summary::Summary {
                use crate::summary::Summarize;
                use dfdx::prelude::*;
                let dev = Cpu::default();
                match self {
                    $(ModelKind::$variant => dev.build_module::<$ty, f32>().summary(batch),)+
                }
            }
        }
    };
}

for_each_model!(define_model_kind);

impl ModelKind {
    /// The shape of one input sample, `[channels, height, width]`.
    pub fn input_shape(self) -> [usize; 3] {
        if self.takes_digits() {
            [1, 28, 28]
        } else {
            [3, 224, 224]
        }
    }

    /// All command-line names, comma-separated (for help and error messages).
    pub fn names() -> String {
        Self::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown model `{s}`; expected one of: {}", Self::names()))
    }
}

/// Nests field visitors as `(a, (b, (c,)))`: dfdx visits at most 6-tuples, nesting has no limit.
#[doc(hidden)]
#[macro_export]
macro_rules! __network_fields {
    ($f:ident) => {
        (Self::module(stringify!($f), |s| &s.$f, |s| &mut s.$f),)
    };
    ($f:ident, $($rest:ident),+) => {
        (Self::module(stringify!($f), |s| &s.$f, |s| &mut s.$f), $crate::__network_fields!($($rest),+))
    };
}

/// The destructuring pattern matching [`__network_fields!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __network_pattern {
    ($f:ident) => { ($f,) };
    ($f:ident, $($rest:ident),+) => { ($f, $crate::__network_pattern!($($rest),+)) };
}

/// Defines a sequential network as a struct with one named field per layer, so that summaries
/// and checkpoints use the layer names (`conv1.weight`, `fc3.bias`, …).
///
/// ```
/// use dfdx::prelude::*;
/// use palm_cnn::nn::{Conv2d, Flatten, Linear, MaxPool2d};
///
/// palm_cnn::network! {
///     /// A toy network.
///     pub struct Toy: [1, 8, 8] -> [2] {
///         conv1: Conv2d<1, 4, 3, 1, 1, 8, 8, E, D>,
///         act1: ReLU,
///         pool1: MaxPool2d<2, 2, 4, 4>,
///         flatten: Flatten<64>,
///         fc1: Linear<64, 2, E, D>,
///     }
/// }
///
/// let dev = Cpu::default();
/// let toy = dev.build_module::<Toy, f32>();
/// let logits = toy.forward(dev.zeros::<Rank4<5, 1, 8, 8>>());
/// assert_eq!(logits.shape().concrete(), [5, 2]);
/// ```
///
/// What it generates, for `f32` on the `Cpu`:
/// - the struct, generic over the dtype `E` and device `D` (defaults `f32`, `Cpu`), which is
///   also its own builder for `dev.build_module::<Name, f32>()`;
/// - dfdx's `TensorCollection` (so optimizers, `zero_grads`, `num_trainable_params` and
///   safetensors work), with each field named after the struct field;
/// - `Module` on batches without a tape (evaluation: dropout off) and `ModuleMut` on batches
///   with an `OwnedTape` (training: dropout on), for any batch dimension;
/// - [`Summarize`](crate::summary::Summarize), the layer-shape table.
///
/// A layer whose declared sizes do not fit its input fails `cargo build` of any program that
/// runs the network (the checks sit in each layer's `forward` and fire when it is instantiated).
#[macro_export]
macro_rules! network {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident : [$($in_dim:literal),+] -> [$($out_dim:literal),+] $(, cam_layer = $cam:ident)? {
            $($(#[$field_meta:meta])* $field:ident : $layer:ty),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        $vis struct $name<E: ::dfdx::shapes::Dtype = f32, D: ::dfdx::tensor::Storage<E> = ::dfdx::tensor::Cpu> {
            $($(#[$field_meta])* #[doc = concat!("Layer `", stringify!($field), "`: `", stringify!($layer), "`.")] pub $field: $layer,)+
        }

        impl<E: ::dfdx::shapes::Dtype, D: ::dfdx::tensor::Storage<E>, E2, D2> ::dfdx::nn::BuildOnDevice<D2, E2> for $name<E, D>
        where
            E2: ::dfdx::shapes::Dtype + ::num_traits::Float + ::rand::distributions::uniform::SampleUniform,
            D2: ::dfdx::tensor_ops::Device<E2>,
        {
            type Built = $name<E2, D2>;
        }

        impl<E, D> ::dfdx::nn::TensorCollection<E, D> for $name<E, D>
        where
            E: ::dfdx::shapes::Dtype + ::num_traits::Float + ::rand::distributions::uniform::SampleUniform,
            D: ::dfdx::tensor_ops::Device<E>,
        {
            type To<E2: ::dfdx::shapes::Dtype, D2: ::dfdx::tensor_ops::Device<E2>> = $name<E2, D2>;

            fn iter_tensors<V: ::dfdx::nn::ModuleVisitor<Self, E, D>>(
                visitor: &mut V,
            ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
                visitor.visit_fields(
                    $crate::__network_fields!($($field),+),
                    |$crate::__network_pattern!($($field),+)| $name { $($field),+ },
                )
            }
        }

        impl<B: ::dfdx::shapes::Dim>
            ::dfdx::nn::Module<::dfdx::tensor::Tensor<(B, $(::dfdx::shapes::Const<$in_dim>),+), f32, ::dfdx::tensor::Cpu, ::dfdx::tensor::NoneTape>>
            for $name<f32, ::dfdx::tensor::Cpu>
        {
            type Output = ::dfdx::tensor::Tensor<(B, $(::dfdx::shapes::Const<$out_dim>),+), f32, ::dfdx::tensor::Cpu, ::dfdx::tensor::NoneTape>;
            type Error = ::dfdx::tensor::CpuError;

            fn try_forward(
                &self,
                x: ::dfdx::tensor::Tensor<(B, $(::dfdx::shapes::Const<$in_dim>),+), f32, ::dfdx::tensor::Cpu, ::dfdx::tensor::NoneTape>,
            ) -> Result<Self::Output, Self::Error> {
                #[allow(unused_imports)]
                use ::dfdx::nn::Module as _;
                $(let x = self.$field.try_forward(x)?;)+
                Ok(x)
            }
        }

        impl<B: ::dfdx::shapes::Dim>
            ::dfdx::nn::ModuleMut<::dfdx::tensor::Tensor<(B, $(::dfdx::shapes::Const<$in_dim>),+), f32, ::dfdx::tensor::Cpu, ::dfdx::tensor::OwnedTape<f32, ::dfdx::tensor::Cpu>>>
            for $name<f32, ::dfdx::tensor::Cpu>
        {
            type Output = ::dfdx::tensor::Tensor<(B, $(::dfdx::shapes::Const<$out_dim>),+), f32, ::dfdx::tensor::Cpu, ::dfdx::tensor::OwnedTape<f32, ::dfdx::tensor::Cpu>>;
            type Error = ::dfdx::tensor::CpuError;

            fn try_forward_mut(
                &mut self,
                x: ::dfdx::tensor::Tensor<(B, $(::dfdx::shapes::Const<$in_dim>),+), f32, ::dfdx::tensor::Cpu, ::dfdx::tensor::OwnedTape<f32, ::dfdx::tensor::Cpu>>,
            ) -> Result<Self::Output, Self::Error> {
                #[allow(unused_imports)]
                use ::dfdx::nn::ModuleMut as _;
                $(let x = self.$field.try_forward_mut(x)?;)+
                Ok(x)
            }
        }

        impl $name<f32, ::dfdx::tensor::Cpu> {
            /// Runs `x` through the layers one by one, recording each output in `summary`.
            fn trace_layers(
                &self,
                x: ::dfdx::tensor::Tensor<(usize, $(::dfdx::shapes::Const<$in_dim>),+), f32, ::dfdx::tensor::Cpu>,
                mut summary: $crate::summary::Summary,
            ) -> $crate::summary::Summary {
                use ::dfdx::nn::Module as _;
                $(
                    let x = self.$field.forward(x);
                    summary.push(
                        stringify!($field),
                        ::std::any::type_name_of_val(&self.$field),
                        &x,
                        <_ as ::dfdx::nn::NumParams<f32, ::dfdx::tensor::Cpu>>::num_trainable_params(&self.$field),
                    );
                )+
                let _ = x;
                summary
            }
        }

        impl $crate::explain::Explain for $name<f32, ::dfdx::tensor::Cpu> {
            fn cam_layer(&self) -> Option<&'static str> {
                None $(.or(Some(stringify!($cam))))?
            }

            fn layer_names(&self) -> &'static [&'static str] {
                &[$(stringify!($field)),+]
            }

            fn probe_layer(
                &self,
                inputs: &[f32],
                layer: &str,
                targets: &[usize],
            ) -> ::anyhow::Result<(Vec<f32>, $crate::ops::Probed<f32>)> {
                #[allow(unused_imports)]
                use ::dfdx::nn::Module as _;
                use ::dfdx::tensor::{Trace as _, TensorFromVec as _};
                use ::dfdx::tensor_ops::{Backward as _, SumTo as _};
                ::anyhow::ensure!(
                    self.layer_names().contains(&layer),
                    "{} has no layer `{}`; its layers: {}",
                    stringify!($name),
                    layer,
                    self.layer_names().join(", ")
                );
                let per_sample: usize = 1 $(* $in_dim)+;
                let outputs: usize = 1 $(* $out_dim)+;
                let batch = inputs.len() / per_sample;
                ::anyhow::ensure!(
                    batch > 0 && inputs.len() == batch * per_sample,
                    "{}: {} input values are not a whole number of {}-value samples",
                    stringify!($name),
                    inputs.len(),
                    per_sample
                );
                ::anyhow::ensure!(
                    targets.len() == batch && targets.iter().all(|&t| t < outputs),
                    "{}: need one target output below {} per sample, got {:?} for {} samples",
                    stringify!($name),
                    outputs,
                    targets,
                    batch
                );
                let dev: ::dfdx::tensor::Cpu = ::dfdx::tensor::Cpu::seed_from_u64(0);
                let sink = $crate::ops::ProbeSink::<f32>::default();
                let x = dev
                    .tensor_from_vec(inputs.to_vec(), (batch, $(::dfdx::shapes::Const::<$in_dim>),+))
                    .leaky_traced();
                $(
                    let x = self.$field.try_forward(x)?;
                    let x = if stringify!($field) == layer { $crate::ops::probe(x, &sink)? } else { x };
                )+
                let values = x.as_vec();
                let mut select = vec![0f32; values.len()];
                for (b, &t) in targets.iter().enumerate() {
                    select[b * outputs + t] = 1.0;
                }
                let select = dev.tensor_from_vec(select, *::dfdx::shapes::HasShape::shape(&x));
                let _grads = (x * select).try_sum()?.try_backward()?;
                let probed = sink.borrow().clone();
                Ok((values, probed))
            }
        }

        impl $crate::summary::Summarize for $name<f32, ::dfdx::tensor::Cpu> {
            fn summary(&self, batch: usize) -> $crate::summary::Summary {
                use ::dfdx::tensor::SampleTensor as _;
                let dev: ::dfdx::tensor::Cpu = ::dfdx::tensor::Cpu::seed_from_u64(0);
                let x = dev.sample_normal_like(&(batch, $(::dfdx::shapes::Const::<$in_dim>),+));
                let summary = $crate::summary::Summary::new(stringify!($name), &x);
                self.trace_layers(x, summary)
            }

            fn profile(&self, inputs: &[f32]) -> ::anyhow::Result<$crate::summary::Summary> {
                use ::dfdx::tensor::TensorFromVec as _;
                let per_sample: usize = 1 $(* $in_dim)+;
                ::anyhow::ensure!(
                    !inputs.is_empty() && inputs.len().is_multiple_of(per_sample),
                    "{}: {} input values are not a whole number of {}-value samples",
                    stringify!($name),
                    inputs.len(),
                    per_sample
                );
                let dev: ::dfdx::tensor::Cpu = ::dfdx::tensor::Cpu::seed_from_u64(0);
                let x = dev.tensor_from_vec(
                    inputs.to_vec(),
                    (inputs.len() / per_sample, $(::dfdx::shapes::Const::<$in_dim>),+),
                );
                let summary = $crate::summary::Summary::profiled(stringify!($name), &x);
                Ok(self.trace_layers(x, summary))
            }
        }

    };
}
