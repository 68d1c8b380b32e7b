//! Pooling layers: [`MaxPool2d`], [`AvgPool2d`] and [`GlobalAvgPool`].

use super::shape_check::{check_output, window_output};
use crate::ops::{avg_pool2d, global_avg_pool2d, max_pool2d, Float};
use dfdx::prelude::*;

macro_rules! window_pool {
    ($(#[$doc:meta])* $name:ident, $op:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Debug, Default, Clone, Copy)]
        pub struct $name<const KERNEL: usize, const STRIDE: usize, const OUT_H: usize, const OUT_W: usize, const PADDING: usize = 0>;

        impl<const K: usize, const S: usize, const OH: usize, const OW: usize, const P: usize> ZeroSizedModule
            for $name<K, S, OH, OW, P>
        {
        }
        impl<const K: usize, const S: usize, const OH: usize, const OW: usize, const P: usize> NonMutableModule
            for $name<K, S, OH, OW, P>
        {
        }

        impl<
                const K: usize,
                const S: usize,
                const OH: usize,
                const OW: usize,
                const P: usize,
                B: Dim,
                C: Dim,
                const H: usize,
                const W: usize,
                E: Float,
                T: Tape<E, Cpu>,
            > Module<Tensor<(B, C, Const<H>, Const<W>), E, Cpu, T>> for $name<K, S, OH, OW, P>
        {
            type Output = Tensor<(B, C, Const<OH>, Const<OW>), E, Cpu, T>;
            type Error = CpuError;

            fn try_forward(&self, x: Tensor<(B, C, Const<H>, Const<W>), E, Cpu, T>) -> Result<Self::Output, CpuError> {
                const {
                    if 2 * P > K {
                        panic!(concat!($label, ": padding may be at most half the window"));
                    }
                    check_output($label, "height", H, OH, window_output($label, "height", H, K, S, P));
                    check_output($label, "width", W, OW, window_output($label, "width", W, K, S, P));
                }
                $op(x, K, S, P, (Const::<OH>, Const::<OW>))
            }
        }
    };
}

window_pool!(
    /// Max pooling over `KERNEL × KERNEL` windows with `STRIDE` and optional `PADDING` (padded
    /// positions never win), producing `OUT_H × OUT_W`. The output size is checked against the
    /// input when the program is built, like [`super::Conv2d`]'s.
    MaxPool2d,
    max_pool2d,
    "MaxPool2d"
);
window_pool!(
    /// Average pooling over `KERNEL × KERNEL` windows with `STRIDE` and optional zero `PADDING`
    /// (padding counts in the average, PyTorch's default), producing `OUT_H × OUT_W`, checked
    /// when the program is built.
    AvgPool2d,
    avg_pool2d,
    "AvgPool2d"
);

/// Global average pooling: `[B, C, H, W]` → `[B, C]`. Nothing to declare: the output size
/// is the channel count, which the type already knows.
#[derive(Debug, Default, Clone, Copy)]
pub struct GlobalAvgPool;

impl ZeroSizedModule for GlobalAvgPool {}
impl NonMutableModule for GlobalAvgPool {}

impl<B: Dim, C: Dim, H: Dim, W: Dim, E: Float, T: Tape<E, Cpu>> Module<Tensor<(B, C, H, W), E, Cpu, T>>
    for GlobalAvgPool
{
    type Output = Tensor<(B, C), E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<(B, C, H, W), E, Cpu, T>) -> Result<Self::Output, CpuError> {
        global_avg_pool2d(x)
    }
}
