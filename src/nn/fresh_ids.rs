//! Fresh tensor ids for a module, so that a model built in one evcxr cell can be differentiated
//! in another.
//!
//! dfdx keys gradients by each tensor's `UniqueId`, drawn from a counter that is a `static` in
//! dfdx. evcxr links every cell into its own library with its own copy of dfdx, so each cell's
//! counter starts again at 0: the weights of a network built in cell 1 carry the same ids as the
//! activations that cell 2 creates, and a backward pass in cell 2 mixes their gradients (or
//! panics with an index out of bounds when the lengths differ; ResNet-50's Grad-CAM did). Giving
//! every tensor of the model a new id from the calling code's counter before a taped pass makes
//! the ids of one pass distinct again. Outside evcxr there is one counter and this changes
//! nothing but the ids.

use dfdx::nn::tensor_collection::{RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut};
use dfdx::prelude::*;

struct Renumber<'a> {
    dev: &'a Cpu,
}

impl TensorVisitor<f32, Cpu> for Renumber<'_> {
    type Viewer = ViewTensorMut;
    type Err = CpuError;
    type E2 = f32;
    type D2 = Cpu;

    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, f32, Cpu>,
        t: &mut Tensor<S, f32, Cpu>,
    ) -> Result<Option<Tensor<S, f32, Cpu>>, Self::Err> {
        // A copy is the only way to a new id through dfdx's public API; one tensor at a time,
        // so the extra memory is the largest tensor's.
        *t = self.dev.try_tensor_from_vec(t.as_vec(), *t.shape())?;
        Ok(None)
    }
}

/// Replaces every tensor of `model` (weights, biases, running statistics) by an equal copy with
/// a new id drawn by the code that calls this (see the module's documentation for why).
///
/// # Errors
/// An allocation failure.
pub fn fresh_ids<M: TensorCollection<f32, Cpu>>(model: &mut M, dev: &Cpu) -> Result<(), CpuError> {
    M::iter_tensors(&mut RecursiveWalker {
        m: model,
        f: &mut Renumber { dev },
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::BatchNorm2d;

    /// The ids in a module's `Debug` text (`UniqueId(n)`), in order.
    fn ids(debug: &str) -> Vec<usize> {
        debug
            .split("UniqueId(")
            .skip(1)
            .map(|rest| rest[..rest.find(')').unwrap()].parse().unwrap())
            .collect()
    }

    #[test]
    fn every_tensor_gets_a_new_id_and_keeps_its_values() {
        let dev = Cpu::seed_from_u64(3);
        let model = dev.build_module::<(Linear<3, 2>, BatchNorm2d<2>), f32>();
        let mut renumbered = model.clone();
        fresh_ids(&mut renumbered, &dev).unwrap();
        let (before, after) = (ids(&format!("{model:?}")), ids(&format!("{renumbered:?}")));
        // weight, bias; BN weight, bias, running mean, running variance
        assert_eq!(before.len(), 6);
        assert_eq!(after.len(), 6);
        assert!(after.iter().all(|id| !before.contains(id)), "{before:?} → {after:?}");
        assert!(
            after.iter().min() > before.iter().max(),
            "new ids come from the counter's present"
        );
        assert_eq!(model.0.weight.as_vec(), renumbered.0.weight.as_vec());
        assert_eq!(model.0.bias.as_vec(), renumbered.0.bias.as_vec());
        let x = dev.sample_normal::<Rank2<4, 3>>();
        assert_eq!(model.0.forward(x.clone()).as_vec(), renumbered.0.forward(x).as_vec());
    }
}
