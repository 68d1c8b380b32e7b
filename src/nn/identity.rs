//! [`Identity`]: passes its input through, e.g. as a residual block's plain shortcut.

use dfdx::prelude::*;

/// The identity layer. dfdx's `()` does the same in a tuple, but cannot be a field of a built
/// module (it builds to nothing), so blocks whose shortcut may be plain use this.
#[derive(Debug, Default, Clone, Copy)]
pub struct Identity;

impl ZeroSizedModule for Identity {}
impl NonMutableModule for Identity {}

impl<X: HasErr> Module<X> for Identity {
    type Output = X;
    type Error = X::Err;

    fn try_forward(&self, x: X) -> Result<X, X::Err> {
        Ok(x)
    }
}
