//! Concatenation along channels: `[B, C₁, H, W] ‖ … ‖ [B, Cₙ, H, W]` → `[B, ΣCᵢ, H, W]`, the
//! join of an Inception block's branches.

use super::{Float, RowMajor};
use dfdx::prelude::*;
use dfdx::tensor::Merge;

/// Joins `parts` (each `[batch, channels_i, plane]`, given with its channel count) along
/// channels.
fn join<E: Float>(parts: &[(&[E], usize)], batch: usize, plane: usize) -> Vec<E> {
    let total: usize = parts.iter().map(|p| p.1).sum();
    let mut out = Vec::with_capacity(batch * total * plane);
    for b in 0..batch {
        for &(data, c) in parts {
            out.extend_from_slice(&data[b * c * plane..(b + 1) * c * plane]);
        }
    }
    out
}

/// Adds the slice of `dy` (`[batch, Σchannels, plane]`) that belongs to part `index` onto `dx`.
fn add_part_grad<E: Float>(dx: &mut [E], dy: &[E], channels: &[usize], index: usize, batch: usize, plane: usize) {
    let total: usize = channels.iter().sum();
    let before: usize = channels[..index].iter().sum();
    let c = channels[index];
    for b in 0..batch {
        let src = &dy[(b * total + before) * plane..][..c * plane];
        super::add_assign(&mut dx[b * c * plane..(b + 1) * c * plane], src);
    }
}

/// Concatenates four `[B, Cᵢ, H, W]` tensors along channels into `[B, Co, H, W]`, merging their
/// tapes (the branches of one input each carry part of it).
///
/// # Panics
/// When the batch or plane sizes differ, or `out_channels` is not the sum of the parts'.
#[allow(clippy::type_complexity)]
pub fn concat_channels4<B, H, W, C1, C2, C3, C4, Co, E, T>(
    parts: (
        Tensor<(B, C1, H, W), E, Cpu, T>,
        Tensor<(B, C2, H, W), E, Cpu, T>,
        Tensor<(B, C3, H, W), E, Cpu, T>,
        Tensor<(B, C4, H, W), E, Cpu, T>,
    ),
    out_channels: Co,
) -> Result<Tensor<(B, Co, H, W), E, Cpu, T>, CpuError>
where
    B: Dim,
    H: Dim,
    W: Dim,
    C1: Dim,
    C2: Dim,
    C3: Dim,
    C4: Dim,
    Co: Dim,
    E: Float,
    T: Tape<E, Cpu> + Merge<T>,
{
    let (b, c1, h, w) = *parts.0.shape();
    let channels = [
        c1.size(),
        parts.1.shape().1.size(),
        parts.2.shape().1.size(),
        parts.3.shape().1.size(),
    ];
    for (i, s) in [
        parts.1.shape().concrete(),
        parts.2.shape().concrete(),
        parts.3.shape().concrete(),
    ]
    .iter()
    .enumerate()
    {
        assert!(
            s[0] == b.size() && s[2] == h.size() && s[3] == w.size(),
            "concat_channels4: part {} is {s:?}, part 0 is {:?}",
            i + 1,
            parts.0.shape().concrete()
        );
    }
    assert_eq!(
        channels.iter().sum::<usize>(),
        out_channels.size(),
        "concat_channels4: parts have {channels:?} channels"
    );
    let dev = parts.0.device().clone();
    let (p0, t0) = parts.0.split_tape();
    let (p1, t1) = parts.1.split_tape();
    let (p2, t2) = parts.2.split_tape();
    let (p3, t3) = parts.3.split_tape();
    let mut tape = t0.merge(t1).merge(t2).merge(t3);
    let (batch, plane) = (b.size(), h.size() * w.size());
    let data = (
        RowMajor::new(&p0),
        RowMajor::new(&p1),
        RowMajor::new(&p2),
        RowMajor::new(&p3),
    );
    let joined = join(
        &[
            (data.0.as_slice(), channels[0]),
            (data.1.as_slice(), channels[1]),
            (data.2.as_slice(), channels[2]),
            (data.3.as_slice(), channels[3]),
        ],
        batch,
        plane,
    );
    let out = dev.try_tensor_from_vec(joined, (b, out_channels, h, w))?;
    if T::OWNS_TAPE {
        let ghosts = (p0.ghost(), p1.ghost(), p2.ghost(), p3.ghost());
        let out_ghost = out.ghost();
        tape.add_backward_op(move |grads| {
            // Moved out rather than copied; put back below for anyone who reads it later.
            let dy = std::mem::take(&mut **grads.get_or_alloc_mut(&out_ghost)?);
            add_part_grad(grads.get_or_alloc_mut(&ghosts.0)?, &dy, &channels, 0, batch, plane);
            add_part_grad(grads.get_or_alloc_mut(&ghosts.1)?, &dy, &channels, 1, batch, plane);
            add_part_grad(grads.get_or_alloc_mut(&ghosts.2)?, &dy, &channels, 2, batch, plane);
            add_part_grad(grads.get_or_alloc_mut(&ghosts.3)?, &dy, &channels, 3, batch, plane);
            **grads.get_or_alloc_mut(&out_ghost)? = dy;
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
