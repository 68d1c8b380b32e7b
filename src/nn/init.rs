//! Weight initialisation schemes: the course's framework's (PaddlePaddle) and PyTorch's.
//!
//! The two frameworks start the same layers very differently, and the course's printed results
//! come from Paddle's:
//!
//! | tensor | [`Init::Paddle`] (the course) | [`Init::PyTorch`] |
//! | --- | --- | --- |
//! | convolution weight `[out, in, k, k]` | N(0, √(2/fan_in)), fan_in = in·k·k | U(±1/√fan_in) |
//! | linear weight `[out, in]` | Xavier-uniform U(±√(6/(in+out))) | U(±1/√in) |
//! | bias | 0 | U(±1/√fan_in) |
//!
//! Layers are built with PyTorch's scheme (dfdx's `Linear` and this crate's `Conv2d` both
//! reset to it); [`reinit`] redraws every weight and bias of a built model by the scheme asked
//! for, recognising the tensors by their checkpoint names (`*.weight`, `*.bias`) and ranks.

use dfdx::nn::tensor_collection::{
    RecursiveWalker, ScalarOptions, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut, ViewTensorName,
};
use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::fmt;
use std::str::FromStr;

/// How a network's weights and biases start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// PaddlePaddle's defaults, which the course's results come from: convolution weights
    /// N(0, √(2/fan_in)), linear weights Xavier-uniform, biases 0.
    #[default]
    Paddle,
    /// PyTorch's defaults: weights and biases uniform in ±1/√fan_in (Kaiming-uniform, a = √5).
    #[value(name = "pytorch")]
    PyTorch,
}

impl Init {
    /// Both schemes.
    pub const ALL: [Init; 2] = [Init::Paddle, Init::PyTorch];

    /// The name used on the command line and in checkpoints (`paddle`, `pytorch`).
    pub fn name(self) -> &'static str {
        match self {
            Init::Paddle => "paddle",
            Init::PyTorch => "pytorch",
        }
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Init {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|i| i.name() == s)
            .ok_or_else(|| format!("unknown initialisation `{s}`; expected paddle or pytorch"))
    }
}

/// The distribution one tensor is drawn from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Draw {
    /// N(0, std).
    Normal {
        /// Standard deviation.
        std: f64,
    },
    /// U(−bound, bound).
    Uniform {
        /// Half-width.
        bound: f64,
    },
    /// All zeros.
    Zeros,
}

/// How `init` draws a tensor called `name` (`conv1.weight`, `fc2.bias`) of shape `shape`, or
/// `None` for tensors it leaves alone (anything but a rank-4 or rank-2 weight and its bias).
/// A bias's fan-in is that of the weight beside it, passed as `bias_fan_in`.
pub fn draw_for(init: Init, name: &str, shape: &[usize], bias_fan_in: Option<usize>) -> Option<Draw> {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    match (leaf, shape.len()) {
        ("weight", 4) => {
            let fan_in = shape[1] * shape[2] * shape[3];
            Some(match init {
                Init::Paddle => Draw::Normal {
                    std: (2.0 / fan_in as f64).sqrt(),
                },
                Init::PyTorch => Draw::Uniform {
                    bound: 1.0 / (fan_in as f64).sqrt(),
                },
            })
        }
        ("weight", 2) => {
            let (fan_out, fan_in) = (shape[0], shape[1]);
            Some(Draw::Uniform {
                bound: match init {
                    Init::Paddle => (6.0 / (fan_in + fan_out) as f64).sqrt(),
                    Init::PyTorch => 1.0 / (fan_in as f64).sqrt(),
                },
            })
        }
        ("bias", 1) => match init {
            Init::Paddle => Some(Draw::Zeros),
            Init::PyTorch => bias_fan_in.map(|f| Draw::Uniform {
                bound: 1.0 / (f as f64).sqrt(),
            }),
        },
        _ => None,
    }
}

struct Reinit<'a> {
    init: Init,
    /// Tensors drawn otherwise, by full name.
    overrides: &'a [(&'a str, Draw)],
    rng: StdRng,
    /// Fan-in of the last weight visited: dfdx visits a layer's weight before its bias.
    last_fan_in: Option<usize>,
}

impl TensorVisitor<f32, Cpu> for Reinit<'_> {
    type Viewer = (ViewTensorMut, ViewTensorName);
    type Err = CpuError;
    type E2 = f32;
    type D2 = Cpu;

    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, f32, Cpu>,
        (t, name): (&mut Tensor<S, f32, Cpu>, String),
    ) -> Result<Option<Tensor<S, f32, Cpu>>, Self::Err> {
        let shape: Vec<usize> = t.shape().concrete().into_iter().collect();
        let draw = match self.overrides.iter().find(|(n, _)| *n == name) {
            Some(&(_, d)) => Some(d),
            None => draw_for(self.init, &name, &shape, self.last_fan_in),
        };
        if name.ends_with("weight") {
            // A batch normalisation's weight (rank 1) precedes a bias that both schemes start
            // at 0 and neither draws: no fan-in for it.
            self.last_fan_in = (shape.len() >= 2).then(|| shape[1..].iter().product());
        }
        let n = t.shape().num_elements();
        let values: Vec<f32> = match draw {
            None => return Ok(None),
            Some(Draw::Zeros) => vec![0.0; n],
            Some(Draw::Uniform { bound }) => (0..n).map(|_| self.rng.gen_range(-bound..bound) as f32).collect(),
            Some(Draw::Normal { std }) => {
                let normal = Normal::new(0.0, std).expect("a positive standard deviation");
                (0..n).map(|_| normal.sample(&mut self.rng) as f32).collect()
            }
        };
        t.copy_from(&values);
        Ok(None)
    }

    fn visit_scalar<N: num_traits::NumCast>(
        &mut self,
        _: ScalarOptions<N>,
        _: (&mut N, String),
    ) -> Result<Option<N>, Self::Err> {
        Ok(None)
    }
}

/// Redraws every convolution and linear weight and bias of `model` by `init`, from `seed`
/// (the same seed gives the same weights). Other tensors are left as they are: a batch
/// normalisation keeps weight 1, bias 0 and its running statistics (both frameworks' start).
pub fn reinit<M: TensorCollection<f32, Cpu>>(model: &mut M, init: Init, seed: u64) {
    reinit_with(model, init, seed, &[]);
}

/// [`reinit`], except that the tensors named in `overrides` (full names, `out.weight`) are drawn
/// as given there.
pub fn reinit_with<M: TensorCollection<f32, Cpu>>(model: &mut M, init: Init, seed: u64, overrides: &[(&str, Draw)]) {
    let mut visitor = Reinit {
        init,
        overrides,
        rng: StdRng::seed_from_u64(seed ^ 0x1417_u64.rotate_left(40)),
        last_fan_in: None,
    };
    let walked = M::iter_tensors(&mut RecursiveWalker {
        m: (model, String::new()),
        f: &mut visitor,
    });
    walked.expect("filling host tensors cannot fail");
}
