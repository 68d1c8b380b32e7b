"""Executes the evcxr notebooks headlessly through a Jupyter client (nbclient) with the `rust`
kernel, and fails when a cell errors, writes anything to stderr (evcxr reports panics and `?`
errors there with an "ok" status), shows a bare `()`, or runs past the timeout.

Usage (through notebooks/run, which installs what this needs):
    notebooks/run [--quick | --full] [--timeout SECONDS] [NOTEBOOK ...]

--quick (default) sets PALM_CNN_QUICK=1: fewer images and epochs; the notebooks are not written.
--full runs the course's recipe and sizes and writes the executed notebooks (outputs included)
back in place, each only after it ran clean.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import re

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def stderr_text(cell):
    """Everything a code cell wrote to stderr, joined."""
    return "".join(
        o.get("text", "")
        for o in cell.get("outputs", [])
        if o.get("output_type") == "stream" and o.get("name") == "stderr"
    )


def bare_unit(output):
    """An execute_result that shows only `()`, the value of a cell ending in a block: noise to a student."""
    data = output.get("data", {}) if output.get("output_type") == "execute_result" else {}
    return list(data) == ["text/plain"] and "".join(data["text/plain"]).strip() == "()"


def first_line(source):
    lines = [l for l in source.splitlines() if l.strip()]
    return lines[0][:80] if lines else ""


def run_one(path, timeout, kernel, write):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel,
        resources={"metadata": {"path": str(path.parent)}},
        allow_errors=False,
        record_timing=True,
    )
    started = time.monotonic()
    problems = []
    execution_error = None
    try:
        client.execute()
    except CellTimeoutError as e:
        problems.append(f"a cell ran past the {timeout} s timeout: {str(e).splitlines()[0]}")
    except CellExecutionError as e:
        execution_error = str(e)  # detailed below from the failing cell's error output
    except DeadKernelError as e:
        problems.append(f"the kernel died: {e}")
    wall = time.monotonic() - started
    timings = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                detail = "\n".join([f"{o.get('ename', '')}: {o.get('evalue', '')}"] + list(o.get("traceback", [])))
                problems.append(f"cell {index} ({first_line(cell.source)!r}) failed:\n{ANSI.sub('', detail).rstrip()}")
        if any(bare_unit(o) for o in cell.get("outputs", [])):
            problems.append(
                f"cell {index} ({first_line(cell.source)!r}) shows a bare `()`: end its last block with `;`"
            )
        err = stderr_text(cell)
        if err.strip():
            problems.append(
                f"cell {index} ({first_line(cell.source)!r}) wrote to stderr:\n{err.rstrip()}"
            )
        t = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in t and "shell.execute_reply" in t:
            from datetime import datetime

            start = datetime.fromisoformat(t["iopub.execute_input"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(t["shell.execute_reply"].replace("Z", "+00:00"))
            timings.append((index, (end - start).total_seconds(), first_line(cell.source)))
    if execution_error and not any("failed:" in p for p in problems):
        problems.append(f"a cell failed:\n{execution_error}")
    if not problems and write:
        tmp = path.with_suffix(".ipynb.tmp")
        nbformat.write(nb, tmp)
        os.replace(tmp, path)
    return problems, wall, timings


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer images and epochs (default)")
    mode.add_argument("--full", action="store_true", help="the course's sizes; write outputs back")
    ap.add_argument("--timeout", type=int, default=None, help="seconds per cell (quick 900, full 3600)")
    ap.add_argument("--kernel", default="rust", help="Jupyter kernel name (default: rust)")
    ap.add_argument("--timings", type=Path, help="also write per-cell timings as JSON here")
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/[0-9]*.ipynb")
    args = ap.parse_args()

    full = args.full
    timeout = args.timeout or (3600 if full else 900)
    if full:
        os.environ.pop("PALM_CNN_QUICK", None)
    else:
        os.environ["PALM_CNN_QUICK"] = "1"
    # Every notebook gets a fresh kernel with its own evcxr folder, as in a student's Jupyter;
    # what they share is what the notebooks themselves set up (the build folder named in their
    # first cell). Quick mode always trains: its earlier runs, which the notebooks would
    # otherwise reuse (Experiment::run_or_reuse), are removed first.
    if not full:
        shutil.rmtree(REPO / "runs" / "notebooks" / "quick", ignore_errors=True)

    paths = args.notebooks or sorted(HERE.glob("[0-9]*.ipynb"))
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 2
    failed = 0
    report = {}
    total_start = time.monotonic()
    for path in paths:
        path = path.resolve()
        print(f"== {path.name} ({'full' if full else 'quick'} mode, {timeout} s per cell)", flush=True)
        problems, wall, timings = run_one(path, timeout, args.kernel, write=full)
        for index, seconds, text in timings:
            print(f"   cell {index:2d} {seconds:8.1f} s  {text}")
        report[path.name] = {"wall_s": round(wall, 1), "cells": [{"cell": i, "s": round(s, 2), "source": t} for i, s, t in timings]}
        if problems:
            failed += 1
            print(f"FAILED {path.name} after {wall:.0f} s:", flush=True)
            for p in problems:
                print("  " + p.replace("\n", "\n  "), flush=True)
        else:
            written = ", outputs written" if full else ""
            print(f"ok {path.name} in {wall:.0f} s{written}", flush=True)
    total = time.monotonic() - total_start
    print(f"== {len(paths) - failed}/{len(paths)} notebooks ran clean in {total:.0f} s")
    if args.timings:
        args.timings.write_text(json.dumps({"mode": "full" if full else "quick", "total_s": round(total, 1), "notebooks": report}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
