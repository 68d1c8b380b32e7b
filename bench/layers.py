#!/usr/bin/env python3
"""Per-layer profile, palm-cnn beside PyTorch: every convolution and fully connected layer of
AlexNet and LeNet-PALM at batch 10, forward, input gradient (dx) and weight gradient (dw, with
the bias gradient), in ms and GFLOP/s, over several interleaved rounds.

    bench/.venv/bin/python bench/layers.py [--rounds 3] [--threads 2] [--json OUT]

Each round runs PyTorch's timing (this file, in a child process) and then palm-cnn's
(`cargo bench --bench conv_layers -- --json`, built once before the first round). Other
processes' CPU share during each half is taken from /proc/stat (bench/rounds.py); a half in
which they used more than 10 % of the machine is marked LOADED and left out of the medians.

PyTorch side: `torch.nn.functional.conv2d` / `linear` for the forward pass and
`torch.ops.aten.convolution_backward` with an output mask for the input gradient alone and the
weight + bias gradients alone (a linear layer's `dy @ W` and `dy.T @ x`), median of 5 timed calls
after one untimed call, `torch.set_num_threads(--threads)`. Never run by `cargo test`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from rounds import LOADED_SHARE, children_ticks, cpu_times  # noqa: E402

BATCH = 10
# name: (channels in, input size, channels out, kernel, stride, padding), as benches/conv_layers.rs
CONVS = {
    "alexnet.conv1": (3, 224, 96, 11, 4, 5),
    "alexnet.conv2": (96, 28, 256, 5, 1, 2),
    "alexnet.conv3": (256, 14, 384, 3, 1, 1),
    "alexnet.conv4": (384, 14, 384, 3, 1, 1),
    "alexnet.conv5": (384, 14, 256, 3, 1, 1),
    "lenet.conv1": (3, 224, 6, 5, 1, 0),
    "lenet.conv2": (6, 110, 16, 5, 1, 0),
    "lenet.conv3": (16, 53, 120, 4, 1, 0),
}
LINEARS = {
    "alexnet.fc1": (12_544, 4096),
    "alexnet.fc2": (4096, 4096),
    "alexnet.fc3": (4096, 1),
    "lenet.fc1": (300_000, 64),
    "lenet.fc2": (64, 1),
}


def median_ms(fn, reps):
    fn()
    walls = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        walls.append((time.perf_counter() - t) * 1e3)
    return statistics.median(walls)


def torch_layers(threads):
    """[{layer, gflop, fwd_ms, dx_ms, dw_ms}] for every layer, timed in PyTorch."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    out = []
    with torch.no_grad():
        for name, (c, hw, o, k, s, p) in CONVS.items():
            x = torch.randn(BATCH, c, hw, hw)
            w = torch.randn(o, c, k, k) * 0.01
            b = torch.randn(o) * 0.01
            y = torch.nn.functional.conv2d(x, w, b, stride=s, padding=p)
            dy = torch.randn_like(y)
            ho = y.shape[2]

            def backward(mask):
                return torch.ops.aten.convolution_backward(
                    dy, x, w, [o], [s, s], [p, p], [1, 1], False, [0, 0], 1, mask
                )

            out.append(
                {
                    "layer": name,
                    "gflop": 2.0 * BATCH * o * c * k * k * ho * ho / 1e9,
                    "fwd_ms": median_ms(lambda: torch.nn.functional.conv2d(x, w, b, stride=s, padding=p), 5),
                    "dx_ms": median_ms(lambda: backward([True, False, False]), 5),
                    "dw_ms": median_ms(lambda: backward([False, True, True]), 5),
                }
            )
        for name, (inputs, outputs) in LINEARS.items():
            x = torch.randn(BATCH, inputs)
            w = torch.randn(outputs, inputs) * 0.01
            b = torch.randn(outputs) * 0.01
            dy = torch.randn(BATCH, outputs)
            out.append(
                {
                    "layer": name,
                    "gflop": 2.0 * BATCH * inputs * outputs / 1e9,
                    "fwd_ms": median_ms(lambda: torch.nn.functional.linear(x, w, b), 7),
                    "dx_ms": median_ms(lambda: dy @ w, 7),
                    "dw_ms": median_ms(lambda: (dy.t() @ x, dy.sum(0)), 7),
                }
            )
    return out


def timed(cmd, env=None):
    """Runs cmd; returns the share of the machine other processes used meanwhile."""
    busy0, total0 = cpu_times()
    ours0 = children_ticks()
    subprocess.run(cmd, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    busy1, total1 = cpu_times()
    ours1 = children_ticks()
    return max(0.0, (busy1 - busy0) - (ours1 - ours0)) / max(1, total1 - total0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write every round's figures here")
    ap.add_argument("--torch-child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_child:
        args.torch_child.write_text(json.dumps({"layers": torch_layers(args.threads)}))
        return 0

    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    subprocess.run(["cargo", "bench", "--bench", "conv_layers", "--no-run"], check=True, cwd=REPO)
    rounds = []
    for i in range(args.rounds):
        halves = {}
        for side in ("torch", "ours"):
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
                path = Path(f.name)
            if side == "torch":
                cmd = [sys.executable, __file__, "--threads", str(args.threads), "--torch-child", str(path)]
            else:
                cmd = ["cargo", "bench", "--quiet", "--bench", "conv_layers", "--", "--json", str(path)]
            others = timed(cmd, env)
            halves[side] = {"others": others, "layers": json.loads(path.read_text())["layers"]}
            path.unlink()
        flags = {s: "  LOADED" if h["others"] > LOADED_SHARE else "" for s, h in halves.items()}
        print(
            f"== round {i + 1}: other processes used {100 * halves['torch']['others']:.1f} % of the machine during "
            f"PyTorch's half{flags['torch']}, {100 * halves['ours']['others']:.1f} % during palm-cnn's{flags['ours']}",
            flush=True,
        )
        rounds.append(halves)

    def med(side, layer, key):
        vals = [
            next(l[key] for l in r[side]["layers"] if l["layer"] == layer)
            for r in rounds
            if r[side]["others"] <= LOADED_SHARE
        ]
        return statistics.median(vals) if vals else float("nan")

    names = [l["layer"] for l in rounds[0]["torch"]["layers"]]
    gflop = {l["layer"]: l["gflop"] for l in rounds[0]["torch"]["layers"]}
    print(f"\nbatch {BATCH}, {args.threads} threads; median ms over quiet rounds, GFLOP/s, ratio = PyTorch ms / palm-cnn ms (>1: palm-cnn faster)")
    print(f"{'layer':<14} {'GFLOP':>6} | {'pass':<4} {'palm-cnn ms':>11} {'GFLOP/s':>8} {'PyTorch ms':>11} {'GFLOP/s':>8} {'ratio':>6}")
    table = []
    for name in names:
        for key, label in (("fwd_ms", "fwd"), ("dx_ms", "dx"), ("dw_ms", "dw")):
            ours, theirs = med("ours", name, key), med("torch", name, key)
            g = gflop[name]
            print(
                f"{name:<14} {g:>6.2f} | {label:<4} {ours:>11.2f} {g / ours * 1e3:>8.1f} {theirs:>11.2f} "
                f"{g / theirs * 1e3:>8.1f} {theirs / ours:>6.2f}"
            )
            table.append({"layer": name, "pass": label, "gflop": g, "ours_ms": ours, "torch_ms": theirs})
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "medians": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
