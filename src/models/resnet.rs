//! ResNet-50, the course's variant: a 7×7 stride-2 stem, sixteen bottleneck blocks in four
//! stages (3, 4, 6, 3), global average pooling, one output logit.

use crate::nn::{BatchNorm2d, Conv2dNoBias, GlobalAvgPool, Identity, Linear, MaxPool2d, ReLU};
use crate::ops::{relu, Float};
use dfdx::prelude::*;
use dfdx::tensor::Merge;
use rand::distributions::uniform::SampleUniform;

/// The course's `ConvBNLayer`: a convolution without bias (padding `(K − 1)/2`, given as
/// `P`), then batch normalisation. The activation, where there is one, is the caller's.
#[derive(Debug, Clone)]
pub struct ConvBn<
    const IN: usize,
    const OUT: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const OUT_HW: usize,
    E: Dtype = f32,
    D: Storage<E> = Cpu,
> {
    /// The convolution.
    pub conv: Conv2dNoBias<IN, OUT, K, S, P, OUT_HW, OUT_HW, E, D>,
    /// Its normalisation.
    pub bn: BatchNorm2d<OUT, E, D>,
}

/// ResNet's bottleneck block on `IN`-channel `IN_HW×IN_HW` maps: 1×1 `conv0` to `WIDTH`
/// channels, 3×3 `conv1` with stride `S`, 1×1 `conv2` to `OUT = 4·WIDTH` channels (ReLU after
/// the first two), plus the shortcut `short` — [`Identity`] or a 1×1 [`ConvBn`] with
/// stride `S` — then ReLU of the sum.
///
/// The two sides of the sum must have one shape: an identity shortcut around a block that
/// changes the channels or the size fails `cargo build`, naming both shapes.
#[derive(Debug, Clone)]
#[allow(clippy::type_complexity)]
pub struct Bottleneck<
    const IN: usize,
    const WIDTH: usize,
    const OUT: usize,
    const S: usize,
    const IN_HW: usize,
    const OUT_HW: usize,
    Short,
    E: Dtype = f32,
    D: Storage<E> = Cpu,
> {
    /// 1×1 reduction to `WIDTH` channels.
    pub conv0: ConvBn<IN, WIDTH, 1, 1, 0, IN_HW, E, D>,
    /// 3×3 with the block's stride.
    pub conv1: ConvBn<WIDTH, WIDTH, 3, S, 1, OUT_HW, E, D>,
    /// 1×1 expansion to `OUT` channels.
    pub conv2: ConvBn<WIDTH, OUT, 1, 1, 0, OUT_HW, E, D>,
    /// The shortcut.
    pub short: Short,
}

/// The projection shortcut of a stage's first block.
pub type Projection<const IN: usize, const OUT: usize, const S: usize, const OUT_HW: usize, E, D> =
    ConvBn<IN, OUT, 1, S, 0, OUT_HW, E, D>;

/// A stage's first block: projection shortcut.
pub type FirstBottleneck<
    const IN: usize,
    const WIDTH: usize,
    const OUT: usize,
    const S: usize,
    const IN_HW: usize,
    const OUT_HW: usize,
    E,
    D,
> = Bottleneck<IN, WIDTH, OUT, S, IN_HW, OUT_HW, Projection<IN, OUT, S, OUT_HW, E, D>, E, D>;

/// Every later block of a stage: identity shortcut, stride 1.
pub type IdentityBottleneck<const C: usize, const WIDTH: usize, const HW: usize, E, D> =
    Bottleneck<C, WIDTH, C, 1, HW, HW, Identity, E, D>;

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const HW: usize,
        E: Dtype,
        D: Storage<E>,
        E2: Dtype + num_traits::Float + SampleUniform,
        D2: Device<E2>,
    > BuildOnDevice<D2, E2> for ConvBn<I, O, K, S, P, HW, E, D>
{
    type Built = ConvBn<I, O, K, S, P, HW, E2, D2>;
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const HW: usize,
        E: Dtype + num_traits::Float + SampleUniform,
        D: Device<E>,
    > TensorCollection<E, D> for ConvBn<I, O, K, S, P, HW, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = ConvBn<I, O, K, S, P, HW, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("conv", |s| &s.conv, |s| &mut s.conv),
                Self::module("bn", |s| &s.bn, |s| &mut s.bn),
            ),
            |(conv, bn)| ConvBn { conv, bn },
        )
    }
}

/// A `[B, C, H, W]` batch of `E` on the `Cpu` with tape `T`.
type Maps<B, const C: usize, const H: usize, const W: usize, E, T> =
    Tensor<(B, Const<C>, Const<H>, Const<W>), E, Cpu, T>;

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const HW: usize,
        B: Dim,
        const C: usize,
        const H: usize,
        const W: usize,
        E: Float,
        T: Tape<E, Cpu>,
    > Module<Maps<B, C, H, W, E, T>> for ConvBn<I, O, K, S, P, HW, E, Cpu>
{
    type Output = Maps<B, O, HW, HW, E, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Maps<B, C, H, W, E, T>) -> Result<Self::Output, CpuError> {
        self.bn.try_forward(self.conv.try_forward(x)?)
    }
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const HW: usize,
        B: Dim,
        const C: usize,
        const H: usize,
        const W: usize,
        E: Float,
    > ModuleMut<Maps<B, C, H, W, E, OwnedTape<E, Cpu>>> for ConvBn<I, O, K, S, P, HW, E, Cpu>
{
    type Output = Maps<B, O, HW, HW, E, OwnedTape<E, Cpu>>;
    type Error = CpuError;

    fn try_forward_mut(&mut self, x: Maps<B, C, H, W, E, OwnedTape<E, Cpu>>) -> Result<Self::Output, CpuError> {
        self.bn.try_forward_mut(self.conv.try_forward(x)?)
    }
}

impl<
        const IN: usize,
        const WIDTH: usize,
        const OUT: usize,
        const S: usize,
        const IN_HW: usize,
        const OUT_HW: usize,
        Short: BuildOnDevice<D2, E2>,
        E: Dtype,
        D: Storage<E>,
        E2: Dtype + num_traits::Float + SampleUniform,
        D2: Device<E2>,
    > BuildOnDevice<D2, E2> for Bottleneck<IN, WIDTH, OUT, S, IN_HW, OUT_HW, Short, E, D>
{
    type Built = Bottleneck<IN, WIDTH, OUT, S, IN_HW, OUT_HW, Short::Built, E2, D2>;
}

impl<
        const IN: usize,
        const WIDTH: usize,
        const OUT: usize,
        const S: usize,
        const IN_HW: usize,
        const OUT_HW: usize,
        Short: TensorCollection<E, D>,
        E: Dtype + num_traits::Float + SampleUniform,
        D: Device<E>,
    > TensorCollection<E, D> for Bottleneck<IN, WIDTH, OUT, S, IN_HW, OUT_HW, Short, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Bottleneck<IN, WIDTH, OUT, S, IN_HW, OUT_HW, Short::To<E2, D2>, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("conv0", |s| &s.conv0, |s| &mut s.conv0),
                Self::module("conv1", |s| &s.conv1, |s| &mut s.conv1),
                Self::module("conv2", |s| &s.conv2, |s| &mut s.conv2),
                Self::module("short", |s| &s.short, |s| &mut s.short),
            ),
            |(conv0, conv1, conv2, short)| Bottleneck {
                conv0,
                conv1,
                conv2,
                short,
            },
        )
    }
}

impl<
        const IN: usize,
        const WIDTH: usize,
        const OUT: usize,
        const S: usize,
        const IN_HW: usize,
        const OUT_HW: usize,
        Short,
        B: Dim,
        const C: usize,
        const H: usize,
        const W: usize,
        E: Float,
        T: Tape<E, Cpu> + Merge<T> + Default,
    > Module<Maps<B, C, H, W, E, T>> for Bottleneck<IN, WIDTH, OUT, S, IN_HW, OUT_HW, Short, E, Cpu>
where
    Cpu: Device<E>,
    Short: Module<Maps<B, C, H, W, E, T>, Output = Maps<B, OUT, OUT_HW, OUT_HW, E, T>, Error = CpuError>,
{
    type Output = Maps<B, OUT, OUT_HW, OUT_HW, E, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Maps<B, C, H, W, E, T>) -> Result<Self::Output, CpuError> {
        let short = self.short.try_forward(x.with_empty_tape())?;
        let y = relu(self.conv0.try_forward(x)?)?;
        let y = relu(self.conv1.try_forward(y)?)?;
        let y = self.conv2.try_forward(y)?;
        relu(y.try_add(short)?)
    }
}

impl<
        const IN: usize,
        const WIDTH: usize,
        const OUT: usize,
        const S: usize,
        const IN_HW: usize,
        const OUT_HW: usize,
        Short,
        B: Dim,
        const C: usize,
        const H: usize,
        const W: usize,
        E: Float,
    > ModuleMut<Maps<B, C, H, W, E, OwnedTape<E, Cpu>>> for Bottleneck<IN, WIDTH, OUT, S, IN_HW, OUT_HW, Short, E, Cpu>
where
    Cpu: Device<E>,
    Short: ModuleMut<
        Maps<B, C, H, W, E, OwnedTape<E, Cpu>>,
        Output = Maps<B, OUT, OUT_HW, OUT_HW, E, OwnedTape<E, Cpu>>,
        Error = CpuError,
    >,
{
    type Output = Maps<B, OUT, OUT_HW, OUT_HW, E, OwnedTape<E, Cpu>>;
    type Error = CpuError;

    fn try_forward_mut(&mut self, x: Maps<B, C, H, W, E, OwnedTape<E, Cpu>>) -> Result<Self::Output, CpuError> {
        let short = self.short.try_forward_mut(x.with_empty_tape())?;
        let y = relu(self.conv0.try_forward_mut(x)?)?;
        let y = relu(self.conv1.try_forward_mut(y)?)?;
        let y = self.conv2.try_forward_mut(y)?;
        relu(y.try_add(short)?)
    }
}

crate::network! {
    /// ResNet-50 (course variant): 3×224×224 → one logit. 23,510,081 trainable parameters and
    /// 53,120 running statistics. Under `Init::Paddle` the `out` layer's weights start as the
    /// course sets them, U(±1/√2048), not Xavier-uniform (its line in the model registry).
    pub struct ResNet50: [3, 224, 224] -> [1], cam_layer = bb_3_2 {
        conv: ConvBn<3, 64, 7, 2, 3, 112, E, D>,
        act: ReLU,
        pool2d_max: MaxPool2d<3, 2, 56, 56, 1>,
        //                    in    width out  stride in  out
        bb_0_0: FirstBottleneck<64,   64, 256,  1, 56, 56, E, D>,
        bb_0_1: IdentityBottleneck<256, 64, 56, E, D>,
        bb_0_2: IdentityBottleneck<256, 64, 56, E, D>,
        bb_1_0: FirstBottleneck<256, 128, 512,  2, 56, 28, E, D>,
        bb_1_1: IdentityBottleneck<512, 128, 28, E, D>,
        bb_1_2: IdentityBottleneck<512, 128, 28, E, D>,
        bb_1_3: IdentityBottleneck<512, 128, 28, E, D>,
        bb_2_0: FirstBottleneck<512, 256, 1024, 2, 28, 14, E, D>,
        bb_2_1: IdentityBottleneck<1024, 256, 14, E, D>,
        bb_2_2: IdentityBottleneck<1024, 256, 14, E, D>,
        bb_2_3: IdentityBottleneck<1024, 256, 14, E, D>,
        bb_2_4: IdentityBottleneck<1024, 256, 14, E, D>,
        bb_2_5: IdentityBottleneck<1024, 256, 14, E, D>,
        bb_3_0: FirstBottleneck<1024, 512, 2048, 2, 14, 7, E, D>,
        bb_3_1: IdentityBottleneck<2048, 512, 7, E, D>,
        bb_3_2: IdentityBottleneck<2048, 512, 7, E, D>,
        pool2d_avg: GlobalAvgPool,
        out: Linear<2048, 1, E, D>,
    }
}
