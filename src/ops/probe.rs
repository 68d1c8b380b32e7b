//! A probe: the identity on a traced tensor that records the tensor's values on the way forward
//! and its gradient on the way back. Grad-CAM ([`crate::explain`]) reads an inner layer's
//! activations and the output's gradient with respect to them through it.

use super::{Float, RowMajor};
use dfdx::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

/// What a probe saw: the tensor's shape and values (forward) and its gradient (backward, once
/// the output's `backward` has run; empty before).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probed<E> {
    /// The probed tensor's shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: Vec<E>,
    /// The gradient arriving at it, row-major; empty until the backward pass has run.
    pub grad: Vec<E>,
}

/// Where a probe writes; shared between the caller and the backward closure on the tape.
pub type ProbeSink<E> = Rc<RefCell<Probed<E>>>;

/// Returns `x` unchanged (as a new tensor on the same tape) and records into `sink` its values
/// now and, when the tape's backward pass reaches it, its gradient. The gradient still flows on
/// to `x`, so a probe can sit anywhere in a network without changing what it computes.
pub fn probe<S: Shape, E: Float, T: Tape<E, Cpu>>(
    x: Tensor<S, E, Cpu, T>,
    sink: &ProbeSink<E>,
) -> Result<Tensor<S, E, Cpu, T>, CpuError> {
    let (x, mut tape) = x.split_tape();
    let values = RowMajor::new(&x).as_slice().to_vec();
    *sink.borrow_mut() = Probed {
        shape: x.shape().concrete().into(),
        values: values.clone(),
        grad: Vec::new(),
    };
    let out = x.device().try_tensor_from_vec(values, *x.shape())?;
    if T::OWNS_TAPE {
        let (x_ghost, out_ghost) = (x.ghost(), out.ghost());
        let sink = Rc::clone(sink);
        tape.add_backward_op(move |grads| {
            let dy = grads.get_or_alloc_mut(&out_ghost)?.to_vec();
            super::add_assign(grads.get_or_alloc_mut(&x_ghost)?, &dy);
            sink.borrow_mut().grad = dy;
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
