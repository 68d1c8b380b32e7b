#!/usr/bin/env python3
"""Decode benchmark: OpenCV (the course's path) vs palm-cnn's Rust loader.

Creates bench/.venv with opencv-python-headless + numpy if needed, generates a
synthetic set at the real sizes if no image folder is given, and for the
2124x2056 and 1444x1444 photos of the folder times, per image:
- OpenCV: cv2.imread + cv2.resize((224, 224)) + CHW + x/255*2-1, one thread
  (the course's path), and cv2.IMREAD_REDUCED_COLOR_2/4/8 (libjpeg-turbo's own
  DCT scaling) for reference;
- palm-cnn (the Rust example `decode_bench`): fast path, jpeg-decoder at the
  same scale, and the exact path, on 1 and 2 threads.
Then prints the speed-ups over OpenCV and checks the Rust exact path's pixels
against OpenCV's.

Usage: python3 bench/decode_bench.py [IMG_DIR] [N]
"""
import os, re, subprocess, sys, time

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

all_files = sorted(os.path.join(img_dir, f) for f in os.listdir(img_dir) if f.endswith(".jpg"))
sizes = [(2124, 2056), (1444, 1444)]
groups = {s: [] for s in sizes}
for f in all_files:
    h, w = cv2.imread(f, cv2.IMREAD_REDUCED_GRAYSCALE_8).shape[:2]
    for (sw, sh) in sizes:
        if (w, h) == ((sw + 7) // 8, (sh + 7) // 8) and len(groups[(sw, sh)]) < n:
            groups[(sw, sh)].append(f)


def course(path, flag=cv2.IMREAD_COLOR):
    img = cv2.imread(path, flag)
    img = cv2.resize(img, (224, 224))
    img = np.transpose(img, (2, 0, 1)).astype("float32")
    return img / 255.0 * 2.0 - 1.0


def time_ms(files, flag):
    course(files[0], flag)
    t = time.perf_counter()
    for f in files:
        course(f, flag)
    return (time.perf_counter() - t) * 1000 / len(files)


print(f"load average before: {os.getloadavg()}")
opencv = {}
for size, files in groups.items():
    if not files:
        continue
    w, h = size
    opencv[size] = time_ms(files, cv2.IMREAD_COLOR)
    print(f"opencv {cv2.__version__} {w}x{h} imread+resize+CHW, 1 thread: {opencv[size]:.2f} ms/image ({len(files)} images)")
    for k, flag in [(2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4), (8, cv2.IMREAD_REDUCED_COLOR_8)]:
        if min(w, h) // k >= 224:
            print(f"opencv {w}x{h} IMREAD_REDUCED_COLOR_{k}+resize+CHW, 1 thread: {time_ms(files, flag):.2f} ms/image")

raw = os.path.join(ROOT, "target", "decode_bench_exact.raw")
res = subprocess.run(["cargo", "run", "--release", "--example", "decode_bench", "--", img_dir, str(n), raw],
                     cwd=ROOT, capture_output=True, text=True)
print(res.stdout, end="")
if res.returncode != 0:
    print(res.stderr)
    sys.exit(1)
print("speed-up over OpenCV's imread+resize (1 thread):")
for line in res.stdout.splitlines():
    m = re.match(r"rust (.+) (\d+)x(\d+) (\d) thread\(s\): ([\d.]+) ms/image", line)
    if m and (int(m[2]), int(m[3])) in opencv:
        ratio = opencv[(int(m[2]), int(m[3]))] / float(m[5])
        print(f"  {m[1]:>20} {m[2]}x{m[3]} {m[4]} thread(s): {ratio:.1f}x")
ours = np.fromfile(raw, np.uint8).reshape(224, 224, 3)
ref = cv2.resize(cv2.imread(groups[sizes[0]][0]), (224, 224))
d = np.abs(ours.astype(int) - ref.astype(int))
print(f"rust exact path vs cv2 (first 2124x2056 image, 0..255): max {d.max()}, mean {d.mean():.3f}")
print(f"load average after: {os.getloadavg()}")
