#!/usr/bin/env python3
"""Peak resident memory of training, palm-cnn beside PyTorch: each side runs in a child process
of its own and the child's maximum resident set size is read from getrusage.

    python3 bench/peak_memory.py [--models alexnet lenet-palm] [--steps 3] [--batch 10]

palm-cnn: `palm-cnn bench --models M --steps N` (training steps with Adam, then evaluation
batches, all in one process). PyTorch: the same model from bench/torch_models.py, N + 1 training
steps with Adam(fused=True) on random 3×224×224 batches, 2 threads. Both include the process's
own code and libraries (PyTorch's are larger). Never run by `cargo test`.
"""

import argparse
import os
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def peak_rss_mib(cmd, env=None):
    """Runs cmd in a fresh child (via a wrapper, so that RUSAGE_CHILDREN holds only that child)
    and returns its peak resident set size in MiB."""
    wrapper = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], check=True, capture_output=True, text=True, env=env)
    return int(out.stdout.strip()) / 1024  # ru_maxrss is in KiB on Linux


def torch_child(model, steps, batch):
    import torch

    sys.path.insert(0, str(HERE))
    import torch_models

    torch.set_num_threads(2)
    net = torch_models.build(model).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    images = torch.rand(batch, 3, 224, 224) * 2 - 1
    targets = (torch.rand(batch, 1) >= 0.5).float()
    for _ in range(steps + 1):
        loss_fn(net(images), targets).backward()
        opt.step()
        opt.zero_grad()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["alexnet", "lenet-palm"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--palm-cnn", default=str(REPO / "target/release/palm-cnn"))
    ap.add_argument("--torch-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_child:
        model, steps, batch = args.torch_child
        torch_child(model, int(steps), int(batch))
        return 0
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    print(f"peak resident memory, MiB (batch {args.batch}, {args.steps} training steps + warm-up)")
    for model in args.models:
        ours = peak_rss_mib(
            [args.palm_cnn, "bench", "--models", model, "--steps", str(args.steps), "--batch", str(args.batch)], env
        )
        try:
            theirs = peak_rss_mib([sys.executable, __file__, "--torch-child", model, str(args.steps), str(args.batch)], env)
            theirs_s = f"{theirs:8.0f}"
        except subprocess.CalledProcessError:
            theirs_s = "   (torch failed or missing)"
        print(f"  {model:<11} palm-cnn {ours:8.0f}   PyTorch fused Adam {theirs_s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
