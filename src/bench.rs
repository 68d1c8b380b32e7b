//! Throughput benchmark: training step (forward + backward + Adam step) and evaluation
//! (forward only) images per second, at a given batch size on random 3×224×224 inputs. Any
//! fundus model through [`crate::network::Network::bench`].

use dfdx::prelude::*;
use serde::Serialize;
use std::time::Instant;

/// One model's measured throughput.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Model name (`lenet-palm`, `alexnet`).
    pub model: String,
    /// Images per batch.
    pub batch: usize,
    /// Timed training steps (after warm-up).
    pub train_steps: usize,
    /// Training images per second: forward with tape, backward, Adam step (which zeroes the gradients).
    pub train_images_per_s: f64,
    /// Mean milliseconds per training step spent in the forward pass.
    pub train_forward_ms: f64,
    /// Mean milliseconds per training step spent in backward.
    pub train_backward_ms: f64,
    /// Mean milliseconds per training step spent in the Adam update.
    pub train_optimizer_ms: f64,
    /// Timed evaluation batches (after warm-up).
    pub eval_batches: usize,
    /// Evaluation images per second: forward without tape, dropout off.
    pub eval_images_per_s: f64,
    /// Worker threads (rayon) the kernels used.
    pub threads: usize,
}

/// Settings of a benchmark run.
#[derive(Debug, Clone, Copy)]
pub struct BenchConfig {
    /// Images per batch (course: 10).
    pub batch: usize,
    /// Untimed steps before measuring.
    pub warmup: usize,
    /// Timed training steps.
    pub train_steps: usize,
    /// Timed evaluation batches.
    pub eval_batches: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            batch: 10,
            warmup: 1,
            train_steps: 5,
            eval_batches: 5,
        }
    }
}

type Images<T = NoneTape> = Tensor<(usize, Const<3>, Const<224>, Const<224>), f32, Cpu, T>;
type Logits<T = NoneTape> = Tensor<(usize, Const<1>), f32, Cpu, T>;

/// Benchmarks any one-logit 3×224×224 model.
pub fn bench_model<M>(name: &str, model: &mut M, config: BenchConfig) -> Result<BenchResult, CpuError>
where
    M: TensorCollection<f32, Cpu>
        + Module<Images, Output = Logits, Error = CpuError>
        + ModuleMut<Images<OwnedTape<f32, Cpu>>, Output = Logits<OwnedTape<f32, Cpu>>, Error = CpuError>,
{
    let dev = Cpu::seed_from_u64(0);
    // Gradients and optimizer state are keyed by tensor id: see `nn::fresh_ids`.
    crate::nn::fresh_ids(model, &dev)?;
    // As in training (`train::train`): subnormals cost a microcode assist each on Intel cores.
    crate::ops::flush_subnormals();
    let shape = (config.batch, Const::<3>, Const::<224>, Const::<224>);
    let images: Images = dev.sample_uniform_like(&shape) * 2.0 - 1.0;
    let targets: Logits = dev.sample_uniform_like(&(config.batch, Const::<1>)).ge(0.5).choose(
        dev.ones_like(&(config.batch, Const::<1>)),
        dev.zeros_like(&(config.batch, Const::<1>)),
    );
    let mut opt = crate::optim::Optimizer::adam(1e-3, None);
    let mut grads = model.try_alloc_grads()?;
    let (mut forward_s, mut backward_s, mut optim_s) = (0.0, 0.0, 0.0);
    for step in 0..config.warmup + config.train_steps {
        let t0 = Instant::now();
        let logits = model.try_forward_mut(images.clone().traced(grads))?;
        let loss = binary_cross_entropy_with_logits_loss(logits, targets.clone());
        let t1 = Instant::now();
        grads = loss.backward();
        let t2 = Instant::now();
        // Also zeroes the gradients for the next step.
        opt.update(model, &mut grads)?;
        let t3 = Instant::now();
        if step >= config.warmup {
            forward_s += (t1 - t0).as_secs_f64();
            backward_s += (t2 - t1).as_secs_f64();
            optim_s += (t3 - t2).as_secs_f64();
        }
    }
    let train_s = forward_s + backward_s + optim_s;
    for _ in 0..config.warmup {
        model.try_forward(images.clone())?;
    }
    let t0 = Instant::now();
    for _ in 0..config.eval_batches {
        model.try_forward(images.clone())?;
    }
    let eval_s = t0.elapsed().as_secs_f64();
    let steps = config.train_steps.max(1) as f64;
    Ok(BenchResult {
        model: name.to_string(),
        batch: config.batch,
        train_steps: config.train_steps,
        train_images_per_s: (config.train_steps * config.batch) as f64 / train_s,
        train_forward_ms: forward_s * 1e3 / steps,
        train_backward_ms: backward_s * 1e3 / steps,
        train_optimizer_ms: optim_s * 1e3 / steps,
        eval_batches: config.eval_batches,
        eval_images_per_s: (config.eval_batches * config.batch) as f64 / eval_s,
        threads: rayon::current_num_threads(),
    })
}

/// The results as a text table.
pub fn table(results: &[BenchResult]) -> String {
    let mut out = format!(
        "{:<12} {:>5} {:>14} {:>11} {:>12} {:>11} {:>13}\n",
        "model", "batch", "train img/s", "forward ms", "backward ms", "adam ms", "eval img/s"
    );
    for r in results {
        out.push_str(&format!(
            "{:<12} {:>5} {:>14.2} {:>11.1} {:>12.1} {:>11.1} {:>13.2}\n",
            r.model,
            r.batch,
            r.train_images_per_s,
            r.train_forward_ms,
            r.train_backward_ms,
            r.train_optimizer_ms,
            r.eval_images_per_s
        ));
    }
    out
}
