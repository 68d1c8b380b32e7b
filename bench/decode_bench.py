#!/usr/bin/env python3
"""Decode benchmark: OpenCV (the course's path) vs palm-cnn's Rust loader.

Creates bench/.venv with opencv-python-headless + numpy if needed, generates a
synthetic set at the real sizes if no image folder is given, times
cv2.imread + cv2.resize((224, 224)) + CHW/scale per 2124x2056 JPEG, runs the
Rust example (single thread and 2 threads), and compares the Rust exact path
with OpenCV's pixels.

Usage: python3 bench/decode_bench.py [IMG_DIR] [N]
"""
import os, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv")
PY = os.path.join(VENV, "bin", "python")

if sys.executable != PY and not os.environ.get("DECODE_BENCH_INNER"):
    if not os.path.exists(PY):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([PY, "-m", "pip", "install", "-q", "opencv-python-headless==4.10.0.84", "numpy"])
    os.execve(PY, [PY] + sys.argv, dict(os.environ, DECODE_BENCH_INNER="1"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)
n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
img_dir = sys.argv[1] if len(sys.argv) > 1 else None
if img_dir is None:
    out = os.path.join(ROOT, "target", "bench-synth")
    if not os.path.exists(out):
        subprocess.check_call(["cargo", "run", "--release", "--", "data", "synth", "--out", out], cwd=ROOT)
    img_dir = os.path.join(out, "PALM-Validation400")

files = sorted(os.path.join(img_dir, f) for f in os.listdir(img_dir) if f.endswith(".jpg"))
files = [f for f in files if cv2.imread(f).shape[:2] == (2056, 2124)][:n]

def course(path):
    img = cv2.imread(path)
    img = cv2.resize(img, (224, 224))
    img = np.transpose(img, (2, 0, 1)).astype("float32")
    return img / 255.0 * 2.0 - 1.0

course(files[0])
t = time.perf_counter()
for f in files:
    course(f)
ms = (time.perf_counter() - t) * 1000 / len(files)
print(f"opencv {cv2.__version__} imread+resize+CHW, 1 thread: {ms:.2f} ms/image over {len(files)} images")

raw = os.path.join(ROOT, "target", "decode_bench_exact.raw")
env = dict(os.environ)
res = subprocess.run(["cargo", "run", "--release", "--example", "decode_bench", "--", img_dir, str(n), raw],
                     cwd=ROOT, capture_output=True, text=True, env=env)
print(res.stdout, end="")
if res.returncode != 0:
    print(res.stderr)
    sys.exit(1)
ours = np.fromfile(raw, np.uint8).reshape(224, 224, 3)
ref = cv2.resize(cv2.imread(files[0]), (224, 224))
d = np.abs(ours.astype(int) - ref.astype(int))
print(f"rust exact path vs cv2 (first image, 0..255): max {d.max()}, mean {d.mean():.3f}")
