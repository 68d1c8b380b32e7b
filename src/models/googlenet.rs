//! GoogLeNet, the course's variant: a stride-1 7×7 stem, nine Inception blocks, global average
//! pooling, one output logit (no auxiliary heads).

use crate::nn::shape_check::ConstMessage;
use crate::nn::{Conv2d, GlobalAvgPool, Linear, MaxPool2d, ReLU};
use crate::ops::{concat_channels4, relu, Float};
use dfdx::prelude::*;
use dfdx::tensor::Merge;
use rand::distributions::uniform::SampleUniform;

/// An Inception block on `C0`-channel `HW×HW` maps, as the course writes it: four branches whose
/// outputs are concatenated along channels into `OUT = C1 + C2B + C3B + C4` channels:
///
/// | branch | layers |
/// | --- | --- |
/// | 1 | `p1_1`: 1×1, `C1` |
/// | 2 | `p2_1`: 1×1, `C2A` → `p2_2`: 3×3 padding 1, `C2B` |
/// | 3 | `p3_1`: 1×1, `C3A` → `p3_2`: 5×5 padding 2, `C3B` |
/// | 4 | `p4_1`: 3×3 max-pool stride 1 padding 1 → `p4_2`: 1×1, `C4` |
///
/// ReLU follows every convolution. `OUT` is declared (stable Rust cannot add sizes in a type)
/// and checked when the program is built: branches that do not add up fail `cargo build`.
#[derive(Debug, Clone)]
#[allow(clippy::type_complexity)]
pub struct Inception<
    const C0: usize,
    const C1: usize,
    const C2A: usize,
    const C2B: usize,
    const C3A: usize,
    const C3B: usize,
    const C4: usize,
    const OUT: usize,
    const HW: usize,
    E: Dtype = f32,
    D: Storage<E> = Cpu,
> {
    /// Branch 1: 1×1.
    pub p1_1: Conv2d<C0, C1, 1, 1, 0, HW, HW, E, D>,
    /// Branch 2: 1×1 reduction.
    pub p2_1: Conv2d<C0, C2A, 1, 1, 0, HW, HW, E, D>,
    /// Branch 2: 3×3.
    pub p2_2: Conv2d<C2A, C2B, 3, 1, 1, HW, HW, E, D>,
    /// Branch 3: 1×1 reduction.
    pub p3_1: Conv2d<C0, C3A, 1, 1, 0, HW, HW, E, D>,
    /// Branch 3: 5×5.
    pub p3_2: Conv2d<C3A, C3B, 5, 1, 2, HW, HW, E, D>,
    /// Branch 4: 3×3 max-pool, stride 1, padding 1.
    pub p4_1: MaxPool2d<3, 1, HW, HW, 1>,
    /// Branch 4: 1×1 projection.
    pub p4_2: Conv2d<C0, C4, 1, 1, 0, HW, HW, E, D>,
}

/// Panics at compile time unless the branches' channels add up to the declared output.
const fn check_concat(branches: [usize; 4], declared: usize) {
    let sum = branches[0] + branches[1] + branches[2] + branches[3];
    if sum != declared {
        let m = ConstMessage::new()
            .text("Inception: declared ")
            .number(declared)
            .text(" output channels, but the branches give ")
            .number(branches[0])
            .text(" + ")
            .number(branches[1])
            .text(" + ")
            .number(branches[2])
            .text(" + ")
            .number(branches[3])
            .text(" = ")
            .number(sum);
        panic!("{}", m.as_str());
    }
}

impl<
        const C0: usize,
        const C1: usize,
        const C2A: usize,
        const C2B: usize,
        const C3A: usize,
        const C3B: usize,
        const C4: usize,
        const OUT: usize,
        const HW: usize,
        E: Dtype,
        D: Storage<E>,
        E2: Dtype + num_traits::Float + SampleUniform,
        D2: Device<E2>,
    > BuildOnDevice<D2, E2> for Inception<C0, C1, C2A, C2B, C3A, C3B, C4, OUT, HW, E, D>
{
    type Built = Inception<C0, C1, C2A, C2B, C3A, C3B, C4, OUT, HW, E2, D2>;
}

impl<
        const C0: usize,
        const C1: usize,
        const C2A: usize,
        const C2B: usize,
        const C3A: usize,
        const C3B: usize,
        const C4: usize,
        const OUT: usize,
        const HW: usize,
        E: Dtype + num_traits::Float + SampleUniform,
        D: Device<E>,
    > TensorCollection<E, D> for Inception<C0, C1, C2A, C2B, C3A, C3B, C4, OUT, HW, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Inception<C0, C1, C2A, C2B, C3A, C3B, C4, OUT, HW, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("p1_1", |s| &s.p1_1, |s| &mut s.p1_1),
                Self::module("p2_1", |s| &s.p2_1, |s| &mut s.p2_1),
                Self::module("p2_2", |s| &s.p2_2, |s| &mut s.p2_2),
                Self::module("p3_1", |s| &s.p3_1, |s| &mut s.p3_1),
                Self::module("p3_2", |s| &s.p3_2, |s| &mut s.p3_2),
                Self::module("p4_2", |s| &s.p4_2, |s| &mut s.p4_2),
            ),
            |(p1_1, p2_1, p2_2, p3_1, p3_2, p4_2)| Inception {
                p1_1,
                p2_1,
                p2_2,
                p3_1,
                p3_2,
                p4_1: MaxPool2d,
                p4_2,
            },
        )
    }
}

impl<
        const C0: usize,
        const C1: usize,
        const C2A: usize,
        const C2B: usize,
        const C3A: usize,
        const C3B: usize,
        const C4: usize,
        const OUT: usize,
        const HW: usize,
        E: Dtype,
        D: Storage<E>,
    > NonMutableModule for Inception<C0, C1, C2A, C2B, C3A, C3B, C4, OUT, HW, E, D>
{
}

impl<
        const C0: usize,
        const C1: usize,
        const C2A: usize,
        const C2B: usize,
        const C3A: usize,
        const C3B: usize,
        const C4: usize,
        const OUT: usize,
        const HW: usize,
        B: Dim,
        const C: usize,
        const H: usize,
        const W: usize,
        E: Float,
        T: Tape<E, Cpu> + Merge<T> + Default,
    > Module<Tensor<(B, Const<C>, Const<H>, Const<W>), E, Cpu, T>>
    for Inception<C0, C1, C2A, C2B, C3A, C3B, C4, OUT, HW, E, Cpu>
where
    Cpu: Device<E>,
{
    type Output = Tensor<(B, Const<OUT>, Const<HW>, Const<HW>), E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<(B, Const<C>, Const<H>, Const<W>), E, Cpu, T>) -> Result<Self::Output, CpuError> {
        const { check_concat([C1, C2B, C3B, C4], OUT) };
        let branch1 = relu(self.p1_1.try_forward(x.with_empty_tape())?)?;
        let branch2 = relu(self.p2_1.try_forward(x.with_empty_tape())?)?;
        let branch2 = relu(self.p2_2.try_forward(branch2)?)?;
        let branch3 = relu(self.p3_1.try_forward(x.with_empty_tape())?)?;
        let branch3 = relu(self.p3_2.try_forward(branch3)?)?;
        let branch4 = relu(self.p4_2.try_forward(self.p4_1.try_forward(x)?)?)?;
        concat_channels4((branch1, branch2, branch3, branch4), Const::<OUT>)
    }
}

crate::network! {
    /// GoogLeNet (course variant): 3×224×224 → one logit. 5,974,577 parameters.
    pub struct GoogLeNet: [3, 224, 224] -> [1], cam_layer = block5_2 {
        conv1: Conv2d<3, 64, 7, 1, 3, 224, 224, E, D>,
        act1: ReLU,
        pool1: MaxPool2d<3, 2, 112, 112, 1>,
        conv2_1: Conv2d<64, 64, 1, 1, 0, 112, 112, E, D>,
        act2_1: ReLU,
        conv2_2: Conv2d<64, 192, 3, 1, 1, 112, 112, E, D>,
        act2_2: ReLU,
        pool2: MaxPool2d<3, 2, 56, 56, 1>,
        //                 in    1×1  3×3      5×5     pool  out  size
        block3_1: Inception<192, 64,  96, 128, 16, 32,  32,  256, 56, E, D>,
        block3_2: Inception<256, 128, 128, 192, 32, 96, 64,  480, 56, E, D>,
        pool3: MaxPool2d<3, 2, 28, 28, 1>,
        block4_1: Inception<480, 192, 96, 208, 16, 48,  64,  512, 28, E, D>,
        block4_2: Inception<512, 160, 112, 224, 24, 64, 64,  512, 28, E, D>,
        block4_3: Inception<512, 128, 128, 256, 24, 64, 64,  512, 28, E, D>,
        block4_4: Inception<512, 112, 144, 288, 32, 64, 64,  528, 28, E, D>,
        block4_5: Inception<528, 256, 160, 320, 32, 128, 128, 832, 28, E, D>,
        pool4: MaxPool2d<3, 2, 14, 14, 1>,
        block5_1: Inception<832, 256, 160, 320, 32, 128, 128, 832, 14, E, D>,
        block5_2: Inception<832, 384, 192, 384, 48, 128, 128, 1024, 14, E, D>,
        pool5: GlobalAvgPool,
        fc: Linear<1024, 1, E, D>,
    }
}
