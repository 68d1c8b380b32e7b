"""Side-by-side CPU throughput: palm-cnn (`palm-cnn bench`) against PyTorch, same models.

    bench/.venv/bin/python bench/torch_bench.py [--steps 5] [--batch 10] [--threads 2]
        [--palm-cnn target/release/palm-cnn] [--json OUT] [--skip-ours | --skip-torch]
        [--models lenet-palm alexnet vgg16 googlenet resnet50]

For LeNet-PALM and AlexNet (or --models ...) on random 3x224x224 batches:
  train: forward + BCEWithLogits loss + backward + Adam(lr 1e-3) step + zero_grad,
         with PyTorch's default Adam and with Adam(fused=True) where this torch has it;
  eval:  model.eval(), torch.no_grad(), forward only.
One untimed warm-up step/batch, then --steps timed ones; figures are images per second.
Ratios are ours / torch: above 1 means palm-cnn is faster.
Without torch, prints how to install it and still runs and prints palm-cnn's figures.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = ["lenet-palm", "alexnet"]

try:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch_models

    TORCH_ERROR = None
except Exception as e:  # ImportError, or a broken install
    torch = None
    TORCH_ERROR = e


def bench_torch_train(kind, batch, steps, fused):
    """(images/s, mean forward ms, mean backward ms, mean optimizer ms) of training steps."""
    torch.manual_seed(0)
    model = torch_models.build(kind).train()
    images = torch.rand(batch, 3, 224, 224) * 2 - 1
    targets = (torch.rand(batch, 1) >= 0.5).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    kwargs = {"fused": True} if fused else {}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **kwargs)
    fwd = bwd = upd = 0.0
    for step in range(1 + steps):
        t0 = time.perf_counter()
        loss = loss_fn(model(images), targets)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad()
        t3 = time.perf_counter()
        if step >= 1:
            fwd += t1 - t0
            bwd += t2 - t1
            upd += t3 - t2
    total = fwd + bwd + upd
    return {
        "train_images_per_s": steps * batch / total,
        "train_forward_ms": fwd * 1e3 / steps,
        "train_backward_ms": bwd * 1e3 / steps,
        "train_optimizer_ms": upd * 1e3 / steps,
    }


def bench_torch_eval(kind, batch, steps):
    torch.manual_seed(0)
    model = torch_models.build(kind).eval()
    images = torch.rand(batch, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        model(images)
        t0 = time.perf_counter()
        for _ in range(steps):
            model(images)
        elapsed = time.perf_counter() - t0
    return steps * batch / elapsed


def flushing_subnormals(on):
    """Sets PyTorch's flush-denormal mode (x86 FTZ + DAZ, as palm-cnn runs); returns whether the
    CPU supports it."""
    return torch.set_flush_denormal(on)


def bench_torch(batch, steps, models):
    results = {}
    for kind in models:
        r = {"model": kind}
        print(f"torch: {kind} train (default Adam) ...", file=sys.stderr, flush=True)
        r["default"] = bench_torch_train(kind, batch, steps, fused=False)
        print(f"torch: {kind} train (fused Adam) ...", file=sys.stderr, flush=True)
        try:
            r["fused"] = bench_torch_train(kind, batch, steps, fused=True)
        except Exception as e:  # older torch: fused Adam is CUDA-only
            r["fused"] = None
            r["fused_error"] = f"{type(e).__name__}: {e}"
            print(f"torch: fused Adam unavailable: {r['fused_error']}", file=sys.stderr)
        print(f"torch: {kind} eval ...", file=sys.stderr, flush=True)
        r["eval_images_per_s"] = bench_torch_eval(kind, batch, steps)
        # PyTorch leaves subnormals on by default; palm-cnn flushes them. On Intel cores each
        # operation on a subnormal costs a microcode assist, so PyTorch's best configuration
        # includes flushing too.
        if flushing_subnormals(True):
            print(f"torch: {kind} train (fused Adam, subnormals flushed) ...", file=sys.stderr, flush=True)
            r["fused_flush"] = bench_torch_train(kind, batch, steps, fused=r["fused"] is not None)
            print(f"torch: {kind} eval (subnormals flushed) ...", file=sys.stderr, flush=True)
            r["eval_flush_images_per_s"] = bench_torch_eval(kind, batch, steps)
            flushing_subnormals(False)
        results[kind] = r
    return results


def bench_ours(exe, batch, steps, threads, models):
    exe = Path(exe)
    if not exe.is_absolute():
        exe = REPO / exe
    if not exe.exists():
        raise FileNotFoundError(f"{exe} not found: build it with `cargo build --release` or pass --palm-cnn PATH")
    env = dict(os.environ)
    env.setdefault("RAYON_NUM_THREADS", str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ours.json"
        cmd = [str(exe), "bench", "--batch", str(batch), "--steps", str(steps), "--json", str(out), "--models", *models]
        print(f"ours: {' '.join(cmd)} (RAYON_NUM_THREADS={env['RAYON_NUM_THREADS']})", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, env=env, stdout=sys.stderr)
        rows = json.loads(out.read_text())
    return {r["model"]: r for r in rows}


def fmt(x, spec="8.2f"):
    return format(x, spec) if isinstance(x, (int, float)) else format("-", ">" + spec.split(".")[0])


def ratio(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0 else None


def table(ours, theirs, models):
    head = (
        f"{'model':12s} | {'ours train':>10s} | {'torch train dflt / fused':>24s} | {'ratio dflt / fused':>18s}"
        f" | {'ours eval':>9s} | {'torch eval':>10s} | {'ratio':>6s}"
    )
    lines = [head, "-" * len(head)]
    for kind in models:
        o = ours.get(kind, {}) if ours else {}
        t = theirs.get(kind, {}) if theirs else {}
        ot, oe = o.get("train_images_per_s"), o.get("eval_images_per_s")
        td = (t.get("default") or {}).get("train_images_per_s")
        tf = (t.get("fused") or {}).get("train_images_per_s")
        te = t.get("eval_images_per_s")
        lines.append(
            f"{kind:12s} | {fmt(ot, '10.2f')} | {fmt(td, '11.2f')} / {fmt(tf, '10.2f')} | "
            f"{fmt(ratio(ot, td), '8.3f')} / {fmt(ratio(ot, tf), '7.3f')} | {fmt(oe, '9.2f')} | "
            f"{fmt(te, '10.2f')} | {fmt(ratio(oe, te), '6.3f')}"
        )
    lines.append("images/s at the given batch; ratio = ours / torch (above 1: palm-cnn faster)")
    lines.append("")
    lines.append(
        f"{'per train step, ms':18s} | {'ours fwd / bwd / adam':>25s} | {'torch default Adam':>25s} | {'torch fused Adam':>25s}"
    )
    f3 = lambda d: " / ".join(fmt(d.get(k), "7.1f") for k in ("train_forward_ms", "train_backward_ms", "train_optimizer_ms"))
    for kind in models:
        o = ours.get(kind, {}) if ours else {}
        t = (theirs or {}).get(kind) or {}
        td, tf = t.get("default") or {}, t.get("fused") or {}
        lines.append(f"{kind:18s} | {f3(o):>25s} | {f3(td):>25s} | {f3(tf):>25s}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per measurement (default 5)")
    ap.add_argument("--batch", type=int, default=10, help="images per batch (default 10)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and RAYON_NUM_THREADS (default 2)")
    ap.add_argument("--palm-cnn", default="target/release/palm-cnn", help="our binary, relative to the repo root or absolute")
    ap.add_argument("--json", type=Path, help="write all figures here")
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="palm-cnn model names (default: lenet-palm alexnet; also vgg16 googlenet resnet50)")
    ap.add_argument("--skip-ours", action="store_true", help="torch only")
    ap.add_argument("--skip-torch", action="store_true", help="palm-cnn only")
    args = ap.parse_args()
    if args.steps < 1 or args.batch < 1:
        ap.error("--steps and --batch must be at least 1")

    info = {
        "batch": args.batch,
        "steps": args.steps,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__ if torch else None,
    }
    print(f"load average before: {' '.join(f'{x:.2f}' for x in info['loadavg_before'])} on {info['cpus']} CPUs", file=sys.stderr)

    theirs = None
    if torch is None:
        print(
            f"torch is not importable ({TORCH_ERROR}); palm-cnn figures only.\n"
            "  install: python3 -m venv bench/.venv && bench/.venv/bin/pip install torch numpy\n"
            "  then:    bench/.venv/bin/python bench/torch_bench.py",
            file=sys.stderr,
        )
    elif not args.skip_torch:
        torch.set_num_threads(args.threads)
        info["torch_threads"] = torch.get_num_threads()
        theirs = bench_torch(args.batch, args.steps, args.models)

    ours = None
    if not args.skip_ours:
        try:
            ours = bench_ours(args.palm_cnn, args.batch, args.steps, args.threads, args.models)
        except (FileNotFoundError, subprocess.CalledProcessError) as e:
            print(f"palm-cnn bench failed: {e}", file=sys.stderr)
    info["loadavg_after"] = os.getloadavg()

    print(f"batch {args.batch}, {args.steps} timed steps, {args.threads} threads, torch {info['torch'] or 'not installed'}")
    print(table(ours, theirs, args.models))
    if args.json:
        args.json.write_text(json.dumps({"info": info, "ours": ours, "torch": theirs}, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
