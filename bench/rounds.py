#!/usr/bin/env python3
"""Runs bench/torch_bench.py (PyTorch, then palm-cnn) for several rounds and reports medians,
spread and ratios, marking rounds in which other processes used the machine.

    bench/.venv/bin/python bench/rounds.py --rounds 3 --models vgg16 googlenet resnet50 --steps 2

Each round is one `torch_bench.py --json` run (every model in PyTorch, then every model in
palm-cnn), so the two frameworks alternate round by round. Other processes' CPU use during a round is the
machine's busy time from /proc/stat minus the CPU time of the round's own processes
(getrusage of the children); a round where others used more than 10 % of the machine is
marked `LOADED` and left out of the medians. The ratio lines divide palm-cnn's figure by the
best PyTorch configuration of the same round (default Adam, fused Adam, or fused Adam with
subnormals flushed as palm-cnn does). Never run by `cargo test`.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
LOADED_SHARE = 0.10


def cpu_times():
    """(busy, total) clock ticks of the whole machine, from /proc/stat's first line."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def children_ticks():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * os.sysconf("SC_CLK_TCK")


def one_round(passthrough):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    busy0, total0 = cpu_times()
    ours0 = children_ticks()
    subprocess.run([sys.executable, os.path.join(HERE, "torch_bench.py"), "--json", out, *passthrough], check=True)
    busy1, total1 = cpu_times()
    ours1 = children_ticks()
    others = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / max(1, total1 - total0)
    with open(out) as f:
        result = json.load(f)
    os.unlink(out)
    return result, others


def figures(result):
    """{(model, measure): images/s} from one torch_bench JSON: `ours train`, `ours eval`,
    `torch default-Adam train`, `torch fused-Adam train`, `torch eval`."""
    out = {}
    for model, r in (result.get("ours") or {}).items():
        out[(model, "ours train")] = r.get("train_images_per_s")
        out[(model, "ours eval")] = r.get("eval_images_per_s")
    for model, r in (result.get("torch") or {}).items():
        for adam in ("default", "fused", "fused_flush"):
            if r.get(adam):
                out[(model, f"torch {adam}-Adam train")] = r[adam]["train_images_per_s"]
        out[(model, "torch eval")] = r.get("eval_images_per_s")
        out[(model, "torch flush eval")] = r.get("eval_flush_images_per_s")
    return {k: v for k, v in out.items() if isinstance(v, (int, float))}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", help="write every round's figures and load here")
    args, passthrough = p.parse_known_args()
    rounds = []
    for i in range(args.rounds):
        result, others = one_round(passthrough)
        flag = "  LOADED" if others > LOADED_SHARE else ""
        print(f"== round {i + 1}: other processes used {100 * others:.1f} % of the machine{flag}", flush=True)
        rounds.append({"others": others, "figures": figures(result), "raw": result})
    quiet = [r for r in rounds if r["others"] <= LOADED_SHARE]
    print(f"\n{len(quiet)} of {len(rounds)} rounds quiet; medians (min–max) over those, images/s:")
    keys = sorted({k for r in quiet for k in r["figures"]})
    for model in sorted({k[0] for k in keys}):
        for measure in sorted(m for (mo, m) in keys if mo == model):
            v = [r["figures"][(model, measure)] for r in quiet if (model, measure) in r["figures"]]
            print(f"  {model:11s} {measure:28s} {statistics.median(v):8.2f}  ({min(v):.2f}–{max(v):.2f})")
        for task in ("train", "eval"):
            # per round: ours ÷ the best PyTorch configuration of that round
            ratios = []
            for r in quiet:
                f = r["figures"]
                best = max((v for (mo, m), v in f.items() if mo == model and m.startswith("torch") and m.endswith(task)), default=None)
                if best and (model, f"ours {task}") in f:
                    ratios.append(f[(model, f"ours {task}")] / best)
            if ratios:
                print(f"  {model:11s} {task} ÷ best PyTorch: median {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"others": r["others"], "raw": r["raw"]} for r in rounds], f, indent=1)


if __name__ == "__main__":
    main()
