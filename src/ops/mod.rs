//! Convolution, fully connected, pooling and batch-normalisation kernels for dfdx 0.13 `Cpu` tensors, with forward and backward passes.
//!
//! dfdx 0.13 hides its own `conv2d` and `pool2d` behind the `nightly` feature, which no longer
//! compiles, so these ops are written here as custom autodiff ops on dfdx's public tape API:
//! each op splits the tape off its input ([`SplitTape::split_tape`]), computes the output, records
//! a closure with [`Tape::add_backward_op`] that accumulates gradients through
//! [`Gradients::get_or_alloc_mut`], and puts the tape back on the output ([`PutTape::put_tape`]).
//!
//! Shapes are runtime values here (any [`Dim`], `usize` or `Const`); the layers in
//! [`crate::nn`] call these ops with `Const` dimensions and check sizes when the program is built.
//!
//! [`SplitTape::split_tape`]: dfdx::tensor::SplitTape::split_tape
//! [`Tape::add_backward_op`]: dfdx::tensor::Tape::add_backward_op
//! [`Gradients::get_or_alloc_mut`]: dfdx::tensor::Gradients::get_or_alloc_mut
//! [`PutTape::put_tape`]: dfdx::tensor::PutTape::put_tape
//! [`Dim`]: dfdx::shapes::Dim

mod activation;
mod batch_norm;
mod concat;
mod conv2d;
mod conv_direct;
mod gemm;
mod linear;
mod pool2d;
mod probe;
mod winograd;
mod winograd_5x5;

pub use activation::{activation, relu, sigmoid, Activation};
pub use batch_norm::{batch_norm2d, BatchNormMode};
pub use concat::concat_channels4;
pub use conv2d::{
    conv2d, Conv2dGeometry, ConvAlgorithm, WINOGRAD_5X5_MIN_CHANNELS, WINOGRAD_MAX_BUFFER, WINOGRAD_MIN_CHANNELS,
};
pub use linear::{linear, LinearGeometry};
pub use pool2d::{avg_pool2d, global_avg_pool2d, max_pool2d, Pool2dGeometry};
pub use probe::{probe, ProbeSink, Probed};

use dfdx::prelude::*;

/// The float types the kernels support: `f32` for models, `f64` for gradient checks.
pub trait Float: Dtype + num_traits::Float + Send + Sync + 'static {}
impl Float for f32 {}
impl Float for f64 {}

/// Output size of a convolution or pooling window along one axis, or `None` when the window does
/// not fit the padded input. Same formula as PyTorch and Paddle: `(n + 2p - k) / s + 1`.
pub const fn window_output_size(input: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
    if stride == 0 || kernel == 0 || input + 2 * padding < kernel {
        None
    } else {
        Some((input + 2 * padding - kernel) / stride + 1)
    }
}

/// `v` as `f32` when `E` is `f32`: for the kernels written with `f32` intrinsics.
fn as_f32<E: Float>(v: &[E]) -> Option<&[f32]> {
    (std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>())
        // SAFETY: E is f32, so the slice's memory holds f32s of the same length.
        .then(|| unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<f32>(), v.len()) })
}

/// `v` as `f32` when `E` is `f32`, mutably.
fn as_f32_mut<E: Float>(v: &mut [E]) -> Option<&mut [f32]> {
    (std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>())
        // SAFETY: as in `as_f32`; the borrow of `v` is handed over whole.
        .then(|| unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<f32>(), v.len()) })
}

/// Whether the CPU has AVX2 and FMA, for which some kernels have f32 versions of their own.
fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `dst += src`, element by element.
fn add_assign<E: Float>(dst: &mut [E], src: &[E]) {
    debug_assert_eq!(dst.len(), src.len());
    for (d, s) in dst.iter_mut().zip(src) {
        *d += *s;
    }
}

/// A CPU tensor in row-major order whose buffer the kernels read in place, without a copy.
///
/// dfdx 0.13 offers no borrowed view of a tensor's buffer, only copies (`as_vec`, which walks a
/// strided index per element, and `copy_into`). Copies cost: AlexNet's 205 MB `fc1` weight was
/// allocated, zeroed and copied on every forward pass, a tenth of an evaluation batch. Holding
/// one of these also keeps the values alive for a backward pass at the price of a reference
/// count, where a copy doubled the memory of every saved input.
///
/// `new` puts the tensor in row-major order first (`contiguous` hands back the same buffer when
/// the strides already are, every tensor these ops and dfdx's arithmetic produce, and copies a
/// permuted or broadcast view into logical order), so the buffer always is the logical order.
pub(crate) struct RowMajor<S: Shape, E: Float> {
    tensor: Tensor<S, E, Cpu>,
}

impl<S: Shape, E: Float> RowMajor<S, E> {
    /// Shares `t`'s buffer when it is row-major already; copies it into row-major order when not.
    pub(crate) fn new(t: &Tensor<S, E, Cpu>) -> Self {
        Self {
            tensor: t.clone().contiguous(),
        }
    }

    /// The values, row-major.
    pub(crate) fn as_slice(&self) -> &[E] {
        let n = self.tensor.shape().num_elements();
        if n == 0 {
            return &[];
        }
        let first: *const E = &self.tensor[S::Concrete::default()];
        let last: *const E = &self.tensor[last_index(self.tensor.shape())];
        // Indexing checked `last` against the buffer's length; with row-major strides it lies
        // exactly `n − 1` elements after the first.
        assert_eq!(
            last as usize - first as usize,
            (n - 1) * std::mem::size_of::<E>(),
            "RowMajor: the buffer is not in row-major order"
        );
        // SAFETY: `first ..= last` lies in the one `Vec` that `self.tensor` holds through an
        // `Arc` and keeps alive and unchanged for the borrow (dfdx writes to a buffer only through
        // `Arc::make_mut`, which copies while we hold a reference count). dfdx hands out only
        // `&E` to its elements, so the pointer comes from one element's reference: the access
        // stays inside one live, initialised allocation, which is what the compiler relies on,
        // though Miri's stricter Stacked Borrows model would reject it.
        unsafe { std::slice::from_raw_parts(first, n) }
    }
}

/// `tensor`'s values, row-major, to change in place: the buffer itself when no other tensor
/// shares it, else a copy that `tensor` then owns (`Arc::make_mut`, dfdx's own copy-on-write).
/// For optimizers, which update every parameter in place.
pub(crate) fn row_major_mut<S: Shape, E: Float>(tensor: &mut Tensor<S, E, Cpu>) -> &mut [E] {
    *tensor = tensor.clone().contiguous();
    let n = tensor.shape().num_elements();
    if n == 0 {
        return &mut [];
    }
    let last_index = last_index(tensor.shape());
    let last = &mut tensor[last_index] as *mut E as usize;
    let first: *mut E = &mut tensor[S::Concrete::default()];
    assert_eq!(
        last - first as usize,
        (n - 1) * std::mem::size_of::<E>(),
        "row_major_mut: the buffer is not in row-major order"
    );
    // SAFETY: as in `RowMajor::as_slice`; `IndexMut` went through `Arc::make_mut`, so this
    // tensor alone owns the buffer, and the returned borrow keeps `tensor` borrowed mutably.
    unsafe { std::slice::from_raw_parts_mut(first, n) }
}

/// The index of a shape's last element (every dimension non-zero).
fn last_index<S: Shape>(shape: &S) -> S::Concrete {
    let mut index = shape.concrete();
    for axis in 0..S::NUM_DIMS {
        index[axis] -= 1;
    }
    index
}

/// `Σ a[i]·b[i]` with `LANES` independent partial sums, so that the compiler vectorises it
/// (floating-point addition is not associative, so one running sum would stay scalar). The
/// direct convolution's rows use 8, the fully connected layer's long rows 16.
#[inline(always)]
fn dot<const LANES: usize, E: Float>(a: &[E], b: &[E]) -> E {
    let mut acc = [E::zero(); LANES];
    let (a_main, a_rest) = a.split_at(a.len() - a.len() % LANES);
    let (b_main, b_rest) = b.split_at(a_main.len());
    for (ca, cb) in a_main.chunks_exact(LANES).zip(b_main.chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] += ca[i] * cb[i];
        }
    }
    let mut sum = acc.iter().fold(E::zero(), |s, v| s + *v);
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += *x * *y;
    }
    sum
}

/// `Σ a[i]` with `LANES` independent partial sums, for the same reason as [`dot`].
#[inline(always)]
fn sum<const LANES: usize, E: Float>(a: &[E]) -> E {
    let mut acc = [E::zero(); LANES];
    let (main, rest) = a.split_at(a.len() - a.len() % LANES);
    for c in main.chunks_exact(LANES) {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    rest.iter()
        .fold(acc.iter().fold(E::zero(), |s, v| s + *v), |s, v| s + *v)
}

/// Number of worker threads the kernels split batches over.
fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Asks glibc's allocator to keep freed memory for reuse instead of returning it to the system.
///
/// The kernels allocate buffers of tens of megabytes each step (AlexNet's patch matrices, its
/// activations and gradients). glibc serves such sizes with fresh `mmap`s by default, which the
/// kernel must fault in and zero on every use: about a fifth of a training step's time, measured
/// with `perf` on AlexNet. After this call they come from the heap and are reused. It changes
/// process-wide allocator settings, so the library never calls it by itself; the `palm-cnn`
/// binary calls it at start-up. Does nothing on other platforms.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; any value is valid for these two.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Makes this thread and every thread of rayon's current pool treat subnormal floats as zero
/// (x86's MXCSR flush-to-zero and denormals-are-zero bits), as deep-learning frameworks commonly
/// run. Gradients far below 1e-38 then cost nothing: on Intel cores each operation that meets a
/// subnormal takes a microcode assist of about a hundred cycles, and backward passes meet many
/// (tiny gradients of saturated or dead units). Results change only below f32's smallest normal
/// value, 1.2e-38. MXCSR is per thread and inherited by nothing, so this sets every pool thread
/// now; call it again after building another pool. Does nothing on other architectures.
pub fn flush_subnormals() {
    set_flush_subnormals();
    rayon::broadcast(|_| set_flush_subnormals());
}

fn set_flush_subnormals() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads and writes this thread's MXCSR; setting FTZ (bit 15) and DAZ (bit 6) only
    // changes how subnormal results and operands are rounded, never traps.
    unsafe {
        let mut csr: u32 = 0;
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
        csr |= (1 << 15) | (1 << 6);
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags));
    }
}
