//! [`Flatten`]: `[B, C, H, W]` → `[B, C·H·W]`.

use super::shape_check::ConstMessage;
use dfdx::prelude::*;

/// Flattens each sample of a `[B, C, H, W]` batch into `N = C·H·W` features, in PyTorch's
/// order (channel, then row, then column). `N` is declared because stable Rust cannot multiply
/// sizes in a type; it is checked when the program is built:
///
/// ```compile_fail
/// use dfdx::prelude::*;
/// use palm_cnn::nn::Flatten;
/// let dev = Cpu::default();
/// // 120·50·50 is 300,000, not 30,000.
/// let _ = Flatten::<30_000>.forward(dev.zeros::<Rank4<1, 120, 50, 50>>());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct Flatten<const N: usize>;

impl<const N: usize> ZeroSizedModule for Flatten<N> {}
impl<const N: usize> NonMutableModule for Flatten<N> {}

impl<const N: usize, B: Dim, const C: usize, const H: usize, const W: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(B, Const<C>, Const<H>, Const<W>), E, D, T>> for Flatten<N>
{
    type Output = Tensor<(B, Const<N>), E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Tensor<(B, Const<C>, Const<H>, Const<W>), E, D, T>) -> Result<Self::Output, D::Err> {
        const {
            if C * H * W != N {
                let m = ConstMessage::new()
                    .text("Flatten: declared ")
                    .number(N)
                    .text(" features, but an input of ")
                    .number(C)
                    .text("x")
                    .number(H)
                    .text("x")
                    .number(W)
                    .text(" gives ")
                    .number(C * H * W);
                panic!("{}", m.as_str());
            }
        }
        let batch = x.shape().0;
        x.try_reshape_like(&(batch, Const::<N>))
    }
}
