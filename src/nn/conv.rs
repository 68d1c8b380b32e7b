//! [`Conv2d`]: a 2-D convolution layer with bias.

use super::shape_check::{check_channels, check_output, window_output};
use crate::ops::{conv2d, Float};
use dfdx::prelude::*;
use rand::distributions::uniform::SampleUniform;
use rand_distr::Uniform;

/// 2-D convolution with bias: `IN` → `OUT` channels, a `KERNEL × KERNEL` window, `STRIDE`,
/// zero `PADDING` on every side, producing `OUT_H × OUT_W` outputs.
///
/// The output size is part of the type because stable Rust cannot compute
/// `(H + 2·PADDING − KERNEL) / STRIDE + 1` in a type. It is checked against the input when
/// `forward` is instantiated: a wrong declaration, or an input with other than `IN` channels,
/// fails `cargo build`:
///
/// ```compile_fail
/// use dfdx::prelude::*;
/// use palm_cnn::nn::Conv2d;
/// let dev = Cpu::default();
/// // A 5×5 convolution of 32×32 gives 28×28, not 27×27.
/// let conv = dev.build_module::<Conv2d<1, 6, 5, 1, 0, 27, 27>, f32>();
/// let _ = conv.forward(dev.zeros::<Rank4<1, 1, 32, 32>>());
/// ```
///
/// Layouts match PyTorch and Paddle (`weight: [OUT, IN, KERNEL, KERNEL]`), and so does the
/// initialisation: weight and bias uniform in `±1/√(IN·KERNEL²)`, which is what PyTorch's
/// Kaiming-uniform with `a = √5` works out to.
///
/// `E` and `D` default to `f32` on the `Cpu`, so the type doubles as its own builder in
/// `dev.build_module::<Conv2d<..>, f32>()`.
#[derive(Debug, Clone)]
pub struct Conv2d<
    const IN: usize,
    const OUT: usize,
    const KERNEL: usize,
    const STRIDE: usize,
    const PADDING: usize,
    const OUT_H: usize,
    const OUT_W: usize,
    E: Dtype = f32,
    D: Storage<E> = Cpu,
> {
    /// Filters, `[OUT, IN, KERNEL, KERNEL]`.
    pub weight: Tensor<Rank4<OUT, IN, KERNEL, KERNEL>, E, D>,
    /// One bias per output channel.
    pub bias: Tensor<Rank1<OUT>, E, D>,
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const OH: usize,
        const OW: usize,
        E: Dtype,
        D: Storage<E>,
        E2: Dtype + num_traits::Float + SampleUniform,
        D2: Device<E2>,
    > BuildOnDevice<D2, E2> for Conv2d<I, O, K, S, P, OH, OW, E, D>
{
    type Built = Conv2d<I, O, K, S, P, OH, OW, E2, D2>;
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const OH: usize,
        const OW: usize,
        E: Dtype + num_traits::Float + SampleUniform,
        D: Device<E>,
    > TensorCollection<E, D> for Conv2d<I, O, K, S, P, OH, OW, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Conv2d<I, O, K, S, P, OH, OW, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| {
                        t.try_fill_with_distr(Uniform::new(-Self::init_bound(), Self::init_bound()))
                    }),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| {
                        t.try_fill_with_distr(Uniform::new(-Self::init_bound(), Self::init_bound()))
                    }),
                ),
            ),
            |(weight, bias)| Conv2d { weight, bias },
        )
    }
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const OH: usize,
        const OW: usize,
        E: Dtype + num_traits::Float,
        D: Storage<E>,
    > Conv2d<I, O, K, S, P, OH, OW, E, D>
{
    /// Half-width of the uniform initialisation: `1/√fan_in` with `fan_in = IN·KERNEL²`.
    pub fn init_bound() -> E {
        E::one() / E::from(I * K * K).expect("fan-in fits the float type").sqrt()
    }
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const OH: usize,
        const OW: usize,
        E: Dtype,
        D: Storage<E>,
    > NonMutableModule for Conv2d<I, O, K, S, P, OH, OW, E, D>
{
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const OH: usize,
        const OW: usize,
        B: Dim,
        const C: usize,
        const H: usize,
        const W: usize,
        E: Float,
        T: Tape<E, Cpu>,
    > Module<Tensor<(B, Const<C>, Const<H>, Const<W>), E, Cpu, T>> for Conv2d<I, O, K, S, P, OH, OW, E, Cpu>
{
    type Output = Tensor<(B, Const<O>, Const<OH>, Const<OW>), E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<(B, Const<C>, Const<H>, Const<W>), E, Cpu, T>) -> Result<Self::Output, CpuError> {
        const {
            check_channels("Conv2d", C, I);
            check_output("Conv2d", "height", H, OH, window_output("Conv2d", "height", H, K, S, P));
            check_output("Conv2d", "width", W, OW, window_output("Conv2d", "width", W, K, S, P));
        }
        conv2d(x, &self.weight, Some(&self.bias), S, P, (Const::<OH>, Const::<OW>))
    }
}

/// [`Conv2d`] without a bias: what precedes a batch normalisation (ResNet's ConvBN), whose
/// shift makes a bias redundant. Same sizes, checks, layout and initialisation as [`Conv2d`];
/// its one tensor is `weight`.
#[derive(Debug, Clone)]
pub struct Conv2dNoBias<
    const IN: usize,
    const OUT: usize,
    const KERNEL: usize,
    const STRIDE: usize,
    const PADDING: usize,
    const OUT_H: usize,
    const OUT_W: usize,
    E: Dtype = f32,
    D: Storage<E> = Cpu,
> {
    /// Filters, `[OUT, IN, KERNEL, KERNEL]`.
    pub weight: Tensor<Rank4<OUT, IN, KERNEL, KERNEL>, E, D>,
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const OH: usize,
        const OW: usize,
        E: Dtype,
        D: Storage<E>,
        E2: Dtype + num_traits::Float + SampleUniform,
        D2: Device<E2>,
    > BuildOnDevice<D2, E2> for Conv2dNoBias<I, O, K, S, P, OH, OW, E, D>
{
    type Built = Conv2dNoBias<I, O, K, S, P, OH, OW, E2, D2>;
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const OH: usize,
        const OW: usize,
        E: Dtype + num_traits::Float + SampleUniform,
        D: Device<E>,
    > TensorCollection<E, D> for Conv2dNoBias<I, O, K, S, P, OH, OW, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Conv2dNoBias<I, O, K, S, P, OH, OW, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::tensor(
                "weight",
                |s| &s.weight,
                |s| &mut s.weight,
                TensorOptions::reset_with(|t| {
                    let bound = Conv2d::<I, O, K, S, P, OH, OW, E, D>::init_bound();
                    t.try_fill_with_distr(Uniform::new(-bound, bound))
                }),
            ),
            |weight| Conv2dNoBias { weight },
        )
    }
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const OH: usize,
        const OW: usize,
        E: Dtype,
        D: Storage<E>,
    > NonMutableModule for Conv2dNoBias<I, O, K, S, P, OH, OW, E, D>
{
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const OH: usize,
        const OW: usize,
        B: Dim,
        const C: usize,
        const H: usize,
        const W: usize,
        E: Float,
        T: Tape<E, Cpu>,
    > Module<Tensor<(B, Const<C>, Const<H>, Const<W>), E, Cpu, T>> for Conv2dNoBias<I, O, K, S, P, OH, OW, E, Cpu>
{
    type Output = Tensor<(B, Const<O>, Const<OH>, Const<OW>), E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<(B, Const<C>, Const<H>, Const<W>), E, Cpu, T>) -> Result<Self::Output, CpuError> {
        const {
            check_channels("Conv2dNoBias", C, I);
            check_output(
                "Conv2dNoBias",
                "height",
                H,
                OH,
                window_output("Conv2dNoBias", "height", H, K, S, P),
            );
            check_output(
                "Conv2dNoBias",
                "width",
                W,
                OW,
                window_output("Conv2dNoBias", "width", W, K, S, P),
            );
        }
        conv2d(x, &self.weight, None, S, P, (Const::<OH>, Const::<OW>))
    }
}
