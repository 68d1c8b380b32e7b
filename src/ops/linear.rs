//! Fully connected layer, `y = x·Wᵀ + b`, as one GEMM each way.
//!
//! Layouts follow PyTorch and Paddle's checkpoints: input `[B, I]`, weight `[O, I]`, bias `[O]`,
//! output `[B, O]`. The batch is small (10) and the weight large (AlexNet's `fc1` is 4096 × 12,544,
//! 205 MB; LeNet-PALM's 64 × 300,000), so every pass is bound by reading or writing the weight
//! once. The backward pass therefore accumulates the weight gradient `dyᵀ·x` and the input
//! gradient `dy·W` straight into dfdx's gradient buffers instead of into temporaries that would
//! be added afterwards.

use super::gemm::{matmul, MatRef};
use super::{threads, Float};
use dfdx::prelude::*;

/// `y = x·Wᵀ (+ b)` for `x` `[B, I]` and `weight` `[O, I]`, recorded on `x`'s tape so that
/// gradients flow to the input, the weight and the bias.
///
/// # Panics
/// When the weight's input size differs from the input's.
pub fn linear<B, I, Wi, O, E, T>(
    x: Tensor<(B, I), E, Cpu, T>,
    weight: &Tensor<(O, Wi), E, Cpu>,
    bias: Option<&Tensor<(O,), E, Cpu>>,
) -> Result<Tensor<(B, O), E, Cpu, T>, CpuError>
where
    B: Dim,
    I: Dim,
    Wi: Dim,
    O: Dim,
    E: Float,
    T: Tape<E, Cpu>,
{
    let (b, i) = *x.shape();
    let (o, wi) = *weight.shape();
    assert_eq!(
        i.size(),
        wi.size(),
        "linear: input has {} features, weight expects {}",
        i.size(),
        wi.size()
    );
    let (batch, inputs, outputs) = (b.size(), i.size(), o.size());
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let x_data = x.as_vec();
    // dfdx offers no borrowed view of a tensor's buffer: this copy is the one extra pass over
    // the weight that the layer costs beyond the GEMMs.
    let w_data = weight.as_vec();
    let mut y = match bias {
        Some(bias) => bias.as_vec().repeat(batch),
        None => vec![E::zero(); batch * outputs],
    };
    matmul(
        &mut y,
        MatRef::new(&x_data, batch, inputs),
        MatRef::new(&w_data, outputs, inputs).t(),
        true,
        threads(),
    );
    let out = dev.try_tensor_from_vec(y, (b, o))?;
    if T::OWNS_TAPE {
        let (x_ghost, w_ghost, out_ghost) = (x.ghost(), weight.ghost(), out.ghost());
        let b_ghost = bias.map(|b| b.ghost());
        drop(x);
        tape.add_backward_op(move |grads| {
            let dy = grads.get_or_alloc_mut(&out_ghost)?.to_vec();
            let dy_m = MatRef::new(&dy, batch, outputs);
            // dx += dy·W
            matmul(
                grads.get_or_alloc_mut(&x_ghost)?,
                dy_m,
                MatRef::new(&w_data, outputs, inputs),
                true,
                threads(),
            );
            // dW += dyᵀ·x
            matmul(
                grads.get_or_alloc_mut(&w_ghost)?,
                dy_m.t(),
                MatRef::new(&x_data, batch, inputs),
                true,
                threads(),
            );
            if let Some(b_ghost) = b_ghost {
                let db = grads.get_or_alloc_mut(&b_ghost)?;
                for row in dy.chunks_exact(outputs.max(1)) {
                    super::add_assign(db, row);
                }
            }
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
