//! [`Dropout`]: dfdx's dropout, usable on a traced input in evaluation.

use dfdx::prelude::*;

/// Zeroes each value with probability `p` in training (scaling the rest by `1/(1 − p)`), and
/// passes its input through in evaluation.
///
/// Training is dfdx's `Dropout` exactly (the same `dropout` op, the same random draws, the
/// checkpoint scalar `p`). The difference is evaluation: dfdx only evaluates inputs without a
/// tape, so a network holding its `Dropout` cannot be run in evaluation mode on a traced input,
/// which is what [Grad-CAM](crate::explain) needs (gradients of the output with respect to an
/// inner layer, dropout off). This one evaluates on any tape.
#[derive(Debug, Clone)]
pub struct Dropout {
    /// Probability of zeroing a value in training.
    pub p: f32,
}

impl Default for Dropout {
    /// `p = 0.5`, the course's `drop_ratio`.
    fn default() -> Self {
        Dropout { p: 0.5 }
    }
}

impl<D: Device<E>, E: Dtype> BuildOnDevice<D, E> for Dropout {
    type Built = Dropout;
}

impl<E: Dtype, D: Device<E>> TensorCollection<E, D> for Dropout {
    type To<E2: Dtype, D2: Device<E2>> = Dropout;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        // The same scalar as dfdx's `Dropout`, so checkpoints keep `drop1.p`.
        visitor.visit_fields(
            <Self as TensorCollection<E, D>>::scalar("p", |s| &s.p, |s| &mut s.p, ScalarOptions::from_default(0.5)),
            |p| Dropout { p },
        )
    }
}

impl<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>> Module<Tensor<S, E, D, T>> for Dropout {
    type Output = Tensor<S, E, D, T>;
    type Error = D::Err;

    /// Evaluation: the input, unchanged.
    fn try_forward(&self, input: Tensor<S, E, D, T>) -> Result<Self::Output, D::Err> {
        Ok(input)
    }
}

impl<S: Shape, E: Dtype, D: Device<E>> ModuleMut<Tensor<S, E, D, OwnedTape<E, D>>> for Dropout {
    type Output = Tensor<S, E, D, OwnedTape<E, D>>;
    type Error = D::Err;

    /// Training: dfdx's `dropout`.
    fn try_forward_mut(&mut self, input: Tensor<S, E, D, OwnedTape<E, D>>) -> Result<Self::Output, D::Err> {
        input.try_dropout(self.p)
    }
}
