#!/usr/bin/env python3
"""Training-step parity: palm-cnn against PyTorch, step by step, from the same weights on the
same batches.

    python3 tools/step_parity.py [--model alexnet] [--steps 50] [--images 100] [--data DIR]

PyTorch draws the initial weights (the course's Paddle scheme, seed 0) and writes them as a
palm-cnn checkpoint with dropout off (`drop1.p = drop2.p = 0`); `--images` training images drawn
across the data folder (seed 0; both classes), preprocessed as the course does (OpenCV, 224x224, `x/255*2-1`), are
written as fixed batches of 10. Then, for Adam(0.001) and Momentum(0.001, 0.9), both frameworks
take `--steps` steps over those batches in order (cycling): `palm-cnn steps` on one side, the
same loop in PyTorch on the other. The script prints every step's two losses and their
difference, next to the difference between PyTorch and PyTorch again with another thread count
(float rounding alone, amplified when a step throws the logits far), the first step where they part by more than 1e-4 relative, and for each tensor the
largest difference of the updated weights relative to the tensor's largest update.

Needs torch, numpy and opencv-python-headless (bench/.venv has them, see bench/README.md) and
a release build of palm-cnn. Not part of `cargo test`.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import side_by_side  # noqa: E402  (the course's loader and Paddle's initialisation in PyTorch)
import torch_models  # noqa: E402

PALM_CNN = side_by_side.PALM_CNN


def write_safetensors(path, tensors, meta):
    """tensors: name -> numpy array (float32) or python float (written as an F64 scalar)."""
    header, chunks, off = {"__metadata__": meta}, [], 0
    for name, t in tensors.items():
        if isinstance(t, float):
            b, dtype, shape = struct.pack("<d", t), "F64", []
        else:
            a = np.ascontiguousarray(t, dtype="<f4")
            b, dtype, shape = a.tobytes(), "F32", list(a.shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


def torch_steps(model, images, labels, optimizer, steps, batch):
    opt = (torch.optim.Adam(model.parameters(), lr=0.001) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9))
    model.train()
    n, losses = len(images), []
    starts = list(range(0, n, batch))
    for step in range(steps):
        s = starts[step % len(starts)]
        x = torch.from_numpy(images[s : s + batch])
        y = torch.from_numpy(labels[s : s + batch].reshape(-1, 1))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="alexnet", choices=["alexnet", "lenet-palm"])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--data", help="PALM-layout folder (default: `palm-cnn data path`)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the per-step losses and weight differences here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = args.data or side_by_side.default_data()
    tx, ty, _, _, _, _ = side_by_side.load_split(data, args.threads)
    # A seeded draw across the whole set, in shuffled order: the files are sorted by name, so the
    # first hundred are all H and N (label 0), and batches of one class let the loss fall to 0.
    pick = np.random.RandomState(0).permutation(len(tx))[: args.images]
    images = side_by_side.normalize(tx[pick])
    labels = ty[pick].astype(np.float32)

    torch.manual_seed(0)
    init = torch_models.build(args.model)
    side_by_side.torch_paddle_init(init)
    for m in init.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    state = {k: v.detach().numpy().copy() for k, v in init.state_dict().items()}
    drop = {f"{name}.p": 0.0 for name, m in init.named_modules() if isinstance(m, torch.nn.Dropout)}
    report = {"model": args.model, "steps": args.steps, "images": args.images, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        ck = os.path.join(tmp, "init.safetensors")
        write_safetensors(ck, {**state, **drop}, {"model": args.model, "init": "paddle"})
        batches = os.path.join(tmp, "batches.safetensors")
        write_safetensors(batches, {"images": images, "labels": labels}, {})
        for optimizer in ("adam", "momentum"):
            after = os.path.join(tmp, f"after-{optimizer}.safetensors")
            out = subprocess.run(
                [PALM_CNN, "steps", "--checkpoint", ck, "--batches", batches, "--optimizer", optimizer,
                 "--steps", str(args.steps), "--out", after],
                check=True, capture_output=True, text=True, env=dict(os.environ, RAYON_NUM_THREADS=str(args.threads)))
            ours = json.loads(out.stdout.strip().splitlines()[-1])["losses"]
            model = torch_models.build(args.model)
            model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
            for m in model.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = 0.0
            theirs = torch_steps(model, images, labels, optimizer, args.steps, 10)
            # PyTorch against itself with another thread count (another summation order): how far
            # float rounding alone carries two runs apart, the scale to read palm-cnn's difference on.
            alt_threads = 1 if args.threads != 1 else 2
            twin = torch_models.build(args.model)
            twin.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
            for m in twin.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = 0.0
            torch.set_num_threads(alt_threads)
            itself = torch_steps(twin, images, labels, optimizer, args.steps, 10)
            torch.set_num_threads(args.threads)
            print(f"\n## {args.model}, {optimizer}: loss per step (PyTorch, palm-cnn, |difference|, "
                  f"|PyTorch with {alt_threads} thread(s) - PyTorch|)")
            parted = None
            for i, (a, b, c) in enumerate(zip(theirs, ours, itself)):
                d = abs(a - b)
                if parted is None and d > 1e-4 * max(1.0, abs(a)):
                    parted = i
                print(f"step {i:3d}  {a:12.6f}  {b:12.6f}  {d:.2e}  {abs(a - c):.2e}")
            tensors, _ = torch_models.read_safetensors(after)
            weights = []
            for name, t0 in state.items():
                w_torch = model.state_dict()[name].detach().numpy()
                w_ours = tensors[name].numpy()
                update = np.abs(w_torch - t0).max()
                diff = np.abs(w_torch - w_ours).max()
                weights.append({"tensor": name, "max_update": float(update), "max_difference": float(diff),
                                "relative": float(diff / update) if update > 0 else None})
            print(f"\nfirst step whose losses part by more than 1e-4 (relative): {parted}")
            print("updated weights after the last step: tensor, largest update, largest difference, ratio")
            for w in weights:
                r = "n/a" if w["relative"] is None else f"{w['relative']:.2e}"
                print(f"  {w['tensor']:12s} {w['max_update']:.3e}  {w['max_difference']:.3e}  {r}")
            report["runs"][optimizer] = {"torch": theirs, "palm_cnn": ours, "torch_other_threads": itself,
                                         "first_parted": parted, "weights": weights}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
