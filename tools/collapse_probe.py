#!/usr/bin/env python3
"""How often does the course's AlexNet recipe collapse on a data folder? A short PyTorch probe.

The course's AlexNet (Paddle's initialisation drawn in PyTorch, Adam 0.001, batches of 10, BCE
with logits, dropout 0.5) trains for `--steps` steps from each of `--seeds`, then the validation
logits are read in eval mode. A run whose logits no longer depend on the image (standard deviation
across images below 1e-3) has collapsed; it never recovers (every ReLU of a layer is dead). The
probe prints, per seed, the loss of every 10th step, the logit spread, AUC and accuracy, and at
the end how many seeds collapsed. It is how the stand-in's generator was calibrated (see
`src/data/synth.rs`): collapse happens in the first epoch, so 40-80 steps tell most of it.

    bench/.venv/bin/python tools/collapse_probe.py [--data DIR] [--seeds 0 1 2 3] [--steps 60]
    bench/.venv/bin/python tools/collapse_probe.py --variant darken   # a pixel transform, see VARIANTS

Needs torch, numpy and opencv-python-headless (the course's loader, shared with
bench/side_by_side.py). Never run by `cargo test`.
"""

import argparse
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bench"))

import numpy as np  # noqa: E402

import side_by_side as sbs  # noqa: E402


def _scale_field(x, f):
    """Scales the pixel values (uint8) by `f`, clipped: a darker or brighter camera exposure."""
    return np.clip(x.astype(np.float32) * f, 0, 255).astype(np.uint8)


def _equalise_brightness(x, target=None):
    """Scales every image so that its mean equals the set's median mean."""
    m = x.reshape(len(x), -1).mean(1)
    target = np.median(m) if target is None else target
    return np.clip(x.astype(np.float32) * (target / m)[:, None, None, None], 0, 255).astype(np.uint8)


def _random_gain(x, lo=0.6, hi=1.4, seed=7):
    """Scales every image by its own random gain: a wider spread of exposures."""
    g = np.random.RandomState(seed).uniform(lo, hi, len(x)).astype(np.float32)
    return np.clip(x.astype(np.float32) * g[:, None, None, None], 0, 255).astype(np.uint8)


def _random_shift(x, span=24, seed=7):
    """Translates every image by its own random offset (black fill): the field placed more freely."""
    rng = np.random.RandomState(seed)
    out = np.zeros_like(x)
    for i in range(len(x)):
        dy, dx = rng.randint(-span, span + 1, 2)
        src = x[i][:, max(0, -dy) : 224 - max(0, dy), max(0, -dx) : 224 - max(0, dx)]
        out[i][:, max(0, dy) : max(0, dy) + src.shape[1], max(0, dx) : max(0, dx) + src.shape[2]] = src
    return out


def _gamma(x, g=2.0):
    """Darkens mid-tones more than highlights: a darker, redder fundus with pale lesions kept pale."""
    return np.clip(255.0 * (x.astype(np.float32) / 255.0) ** g, 0, 255).astype(np.uint8)


VARIANTS = {
    "none": lambda x: x,
    "darken": lambda x: _scale_field(x, 0.7),
    "darker": lambda x: _scale_field(x, 0.5),
    "brighten": lambda x: _scale_field(x, 1.2),
    "equalise": _equalise_brightness,
    "gain": _random_gain,
    "gamma2": _gamma,
    "gamma15": lambda x: _gamma(x, 1.5),
    "gamma06": lambda x: _gamma(x, 0.6),
    "shift": _random_shift,
}


def probe(tx, ty, vx, vy, seed, steps, threads, log_every):
    import torch

    import torch_models

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = torch_models.build("alexnet")
    sbs.torch_paddle_init(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    rng = random.Random(seed)
    order = []
    losses = []
    model.train()
    for step in range(steps):
        if not order:
            order = sbs.batches(len(tx), 10, rng)
        idx = order.pop(0)
        x = torch.from_numpy(sbs.normalize(tx[idx]))
        y = torch.from_numpy(ty[idx].reshape(-1, 1).astype(np.float32))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    model.eval()
    logits = []
    with torch.no_grad():
        for i in range(0, len(vx), 10):
            logits.extend(model(torch.from_numpy(sbs.normalize(vx[i : i + 10]))).ravel().tolist())
    m = sbs.epoch_metrics(logits, vy.tolist())
    trace = " ".join(f"{np.mean(losses[i : i + log_every]):.2f}" for i in range(0, steps, log_every))
    return m, trace


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="PALM-layout folder (default: palm-cnn data path)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5, 6, 7])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--valid", type=int, default=200, help="validation images to score (first N)")
    ap.add_argument("--variant", default="none", choices=sorted(VARIANTS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=10)
    args = ap.parse_args()

    data = args.data or sbs.default_data()
    tx, ty, vx, vy, _, _ = sbs.load_split(data, args.threads)
    f = VARIANTS[args.variant]
    tx, vx, vy = f(tx), f(vx[: args.valid]), vy[: args.valid]
    print(f"data {data}, variant {args.variant}, {args.steps} steps, {len(vx)} validation images", flush=True)
    collapsed = 0
    for seed in args.seeds:
        t0 = time.time()
        m, trace = probe(tx, ty, vx, vy, seed, args.steps, args.threads, args.log_every)
        dead = m["logit_std"] < sbs.COLLAPSE_STD
        collapsed += dead
        print(
            f"seed {seed}: {'COLLAPSED' if dead else 'alive    '} logit std {m['logit_std']:.2e} "
            f"AUC {m['auc']:.3f} acc {m['accuracy']:.4f} pos {m['positives']}  "
            f"loss/{args.log_every} steps: {trace}  ({time.time() - t0:.0f} s)",
            flush=True,
        )
    print(f"variant {args.variant}: {collapsed}/{len(args.seeds)} collapsed", flush=True)


if __name__ == "__main__":
    main()
