#!/usr/bin/env python3
"""The course's networks with the course's recipe, in PaddlePaddle, PyTorch and palm-cnn, on the
same PALM-layout folder, per epoch and per seed.

    python3 bench/side_by_side.py                        # AlexNet and LeNet, seeds 0 1 2, all three
    python3 bench/side_by_side.py --models alexnet --seeds 0 --frameworks paddle palm-cnn
    python3 bench/side_by_side.py --data /path/to/PALM    # the real photos, extracted
    python3 bench/side_by_side.py --baseline-only         # the one-statistic baseline only

For every (model, seed, framework) it prints, after each epoch, the validation accuracy, the
mean BCE loss, the AUC, how many of the validation images were predicted positive, and the
standard deviation of the validation logits across images (below 1e-3 the output no longer
depends on the image: the network has collapsed). At the end: a table per model, the medians
over seeds at the last epoch, and the best accuracy any threshold on one image statistic
(mean R, G or B, brightness, contrast) reaches on the validation images, which is what a
network could get without looking at any lesion.

The recipe is the course's: `cv2.imread` (BGR), 224x224 bilinear, HWC -> CHW, `x/255*2-1`;
training files shuffled every epoch into batches of 10, the short last batch kept; BCE with
logits on one logit; AlexNet Adam(0.001); LeNet, VGG-16, GoogLeNet Momentum(0.001, 0.9); ResNet-50
Momentum(0.001, 0.9, L2 0.001); 5 epochs; evaluation in
eval mode (dropout off) after every epoch. Paddle keeps its own default initialisation (the
course's); PyTorch gets the same scheme drawn by hand unless `--torch-init pytorch`; palm-cnn
runs `palm-cnn train --init paddle`. Every run is a subprocess of its own, with `--threads`
threads (default 2).

Data: `--data` (default: `palm-cnn data path`, i.e. `$PALM_DATA` or the synthetic set) is the
extracted layout — `PALM-Training400/*.jpg`, `PALM-Validation400/*.jpg`,
`PALM-Validation-GT/labels.csv` (or the course's `PM_Label_and_Fovea_Location.xlsx`, read with
openpyxl). The decoded tensors are cached under `bench/.cache/`.

Needs: numpy and opencv-python-headless; paddlepaddle and/or torch for those columns (a
framework that does not import is skipped, and says so); a release build of palm-cnn
(`cargo build --release`) for its column. Never run by `cargo test`.
"""

import argparse
import csv
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PALM_CNN = os.path.join(ROOT, "target", "release", "palm-cnn")
FRAMEWORKS = ("palm-cnn", "paddle", "torch")
COLLAPSE_STD = 1e-3
MODELS = ("alexnet", "lenet-palm", "vgg16", "googlenet", "resnet50")
# Trainable parameters, the same in all three frameworks (checked before training).
PARAMS = {"alexnet": 71_916_929, "lenet-palm": 19_233_841, "vgg16": 134_264_641,
          "googlenet": 5_974_577, "resnet50": 23_510_081}
# The course's L2 weight decay (ResNet-50 only); AlexNet trains with Adam, the rest Momentum.
WEIGHT_DECAY = {"resnet50": 0.001}


# ----------------------------------------------------------------------------- data


def default_data():
    out = subprocess.run([PALM_CNN, "data", "path"], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def valid_labels(gt_dir):
    path = os.path.join(gt_dir, "labels.csv")
    if os.path.exists(path):
        with open(path, newline="") as f:
            return {r["imgName"]: int(float(r["Label"])) for r in csv.DictReader(f)}
    import openpyxl  # the course's download has only the xlsx

    ws = openpyxl.load_workbook(os.path.join(gt_dir, "PM_Label_and_Fovea_Location.xlsx"), read_only=True).active
    rows = list(ws.iter_rows(values_only=True))
    col = {name: i for i, name in enumerate(rows[0])}
    return {r[col["imgName"]]: int(r[col["Label"]]) for r in rows[1:] if r[col["imgName"]]}


def course_image(path):
    """The course's transform, up to the uint8 CHW array (`x/255*2-1` is applied per batch)."""
    import cv2

    img = cv2.imread(path)  # BGR
    if img is None:
        raise SystemExit(f"cannot read {path}")
    img = cv2.resize(img, (224, 224))  # bilinear
    return img.transpose((2, 0, 1))


def load_split(data, threads=2):
    """(train_x uint8 [N,3,224,224], train_y, valid_x, valid_y, train_names, valid_names), cached."""
    import numpy as np

    tdir = os.path.join(data, "PALM-Training400")
    vdir = os.path.join(data, "PALM-Validation400")
    train_names = sorted(n for n in os.listdir(tdir) if n.lower().endswith(".jpg"))
    labels = valid_labels(os.path.join(data, "PALM-Validation-GT"))
    valid_names = sorted(n for n in os.listdir(vdir) if n in labels)
    key = hashlib.sha1()
    for d, names in ((tdir, train_names), (vdir, valid_names)):
        for n in names:
            st = os.stat(os.path.join(d, n))
            key.update(f"{n}:{st.st_size}:{st.st_mtime_ns};".encode())
    cache = os.path.join(HERE, ".cache", f"palm-{key.hexdigest()[:16]}.npz")
    if os.path.exists(cache):
        z = np.load(cache)
        return z["tx"], z["ty"], z["vx"], z["vy"], train_names, valid_names
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.time()
    with ThreadPoolExecutor(threads) as pool:
        tx = np.stack(list(pool.map(course_image, [os.path.join(tdir, n) for n in train_names])))
        vx = np.stack(list(pool.map(course_image, [os.path.join(vdir, n) for n in valid_names])))
    # H (high myopia) and N (normal) are 0, P (pathologic myopia) is 1, as in the course.
    ty = np.array([1 if n[0] == "P" else 0 for n in train_names], dtype=np.float32)
    vy = np.array([labels[n] for n in valid_names], dtype=np.float32)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.savez(cache, tx=tx, ty=ty, vx=vx, vy=vy)
    print(f"decoded {len(tx)} + {len(vx)} images with OpenCV in {time.time() - t0:.1f} s -> {cache}", file=sys.stderr)
    return tx, ty, vx, vy, train_names, valid_names


def normalize(x_uint8):
    import numpy as np

    return (x_uint8.astype(np.float32) / 255.0 * 2.0 - 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- metrics


def auc(scores, labels):
    """ROC AUC by ranks (ties share the mean rank)."""
    pairs = sorted(zip(scores, labels))
    n_pos = sum(1 for _, y in pairs if y > 0.5)
    n_neg = len(pairs) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        mean_rank = (i + j) / 2.0 + 1.0
        rank_sum += mean_rank * sum(1 for k in range(i, j + 1) if pairs[k][1] > 0.5)
        i = j + 1
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def epoch_metrics(logits, labels):
    n = len(logits)
    probs = [1.0 / (1.0 + math.exp(-z)) if z > -80 else 0.0 for z in logits]
    preds = [1 if p > 0.5 else 0 for p in probs]  # the course: arg-max of [1-p, p]
    loss = sum(max(z, 0) - z * y + math.log1p(math.exp(-abs(z))) for z, y in zip(logits, labels)) / n
    mean = sum(logits) / n
    std = math.sqrt(sum((z - mean) ** 2 for z in logits) / n)
    return {
        "accuracy": sum(1 for p, y in zip(preds, labels) if p == int(y)) / n,
        "loss": loss,
        "auc": auc(logits, labels),
        "positives": sum(preds),
        "logit_std": std,
        "collapsed": std < COLLAPSE_STD,
    }


def one_statistic_baseline(vx, vy):
    """Best validation accuracy of a threshold (either direction) on one image statistic."""
    import numpy as np

    x = vx.astype(np.float32)
    stats = {
        "mean B": x[:, 0].mean(axis=(1, 2)),
        "mean G": x[:, 1].mean(axis=(1, 2)),
        "mean R": x[:, 2].mean(axis=(1, 2)),
        "brightness": x.mean(axis=(1, 2, 3)),
        "contrast": x.mean(axis=1).std(axis=(1, 2)),
    }
    out = {}
    y = vy.astype(np.int64)
    for name, s in stats.items():
        order = np.argsort(s)
        ys = y[order]
        # Predict positive above the cut (or below it): accuracy at every cut position.
        pos_above = np.concatenate([[0], np.cumsum(ys[::-1])])[::-1]  # positives at index >= k
        neg_below = np.concatenate([[0], np.cumsum(1 - ys)])  # negatives at index < k
        acc_up = (pos_above + neg_below) / len(y)
        acc_down = 1.0 - acc_up
        out[name] = float(max(acc_up.max(), acc_down.max()))
    return out


# ----------------------------------------------------------------------------- workers


def batches(n, batch, rng):
    idx = list(range(n))
    rng.shuffle(idx)
    return [idx[i : i + batch] for i in range(0, n, batch)]


def worker_paddle(args, tx, ty, vx, vy):
    import numpy as np
    import paddle
    import paddle.nn as nn
    import paddle.nn.functional as F

    paddle.set_device("cpu")
    paddle.seed(args.seed)
    np.random.seed(args.seed)

    class LeNet(nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2D(3, 6, 5)
            self.pool1 = nn.MaxPool2D(2, 2)
            self.conv2 = nn.Conv2D(6, 16, 5)
            self.pool2 = nn.MaxPool2D(2, 2)
            self.conv3 = nn.Conv2D(16, 120, 4)
            self.fc1 = nn.Linear(300000, 64)
            self.fc2 = nn.Linear(64, 1)

        def forward(self, x):
            x = self.pool1(F.sigmoid(self.conv1(x)))
            x = self.pool2(F.sigmoid(self.conv2(x)))
            x = F.sigmoid(self.conv3(x))
            x = paddle.reshape(x, [x.shape[0], -1])
            return self.fc2(F.sigmoid(self.fc1(x)))

    class AlexNet(nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2D(3, 96, 11, stride=4, padding=5)
            self.pool1 = nn.MaxPool2D(2, 2)
            self.conv2 = nn.Conv2D(96, 256, 5, stride=1, padding=2)
            self.pool2 = nn.MaxPool2D(2, 2)
            self.conv3 = nn.Conv2D(256, 384, 3, stride=1, padding=1)
            self.conv4 = nn.Conv2D(384, 384, 3, stride=1, padding=1)
            self.conv5 = nn.Conv2D(384, 256, 3, stride=1, padding=1)
            self.pool5 = nn.MaxPool2D(2, 2)
            self.fc1 = nn.Linear(12544, 4096)
            self.drop1 = nn.Dropout(0.5)
            self.fc2 = nn.Linear(4096, 4096)
            self.drop2 = nn.Dropout(0.5)
            self.fc3 = nn.Linear(4096, 1)

        def forward(self, x):
            x = self.pool1(F.relu(self.conv1(x)))
            x = self.pool2(F.relu(self.conv2(x)))
            x = F.relu(self.conv3(x))
            x = F.relu(self.conv4(x))
            x = self.pool5(F.relu(self.conv5(x)))
            x = paddle.reshape(x, [x.shape[0], -1])
            x = self.drop1(F.relu(self.fc1(x)))
            x = self.drop2(F.relu(self.fc2(x)))
            return self.fc3(x)

    def conv_relu(cin, cout, k, stride=1, padding=0):
        return nn.Sequential(nn.Conv2D(cin, cout, k, stride=stride, padding=padding), nn.ReLU())

    def classifier(features):
        return [nn.Flatten(), nn.Linear(features, 4096), nn.ReLU(), nn.Dropout(0.5),
                nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 1)]

    def vgg16():
        layers, cin = [], 3
        for widths in ([64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3):
            for w in widths:
                layers.append(conv_relu(cin, w, 3, padding=1))
                cin = w
            layers.append(nn.MaxPool2D(2, 2))
        return nn.Sequential(*layers, *classifier(25088))

    class Inception(nn.Layer):
        def __init__(self, cin, c1, c2, c3, c4):
            super().__init__()
            self.p1 = conv_relu(cin, c1, 1)
            self.p2 = nn.Sequential(conv_relu(cin, c2[0], 1), conv_relu(c2[0], c2[1], 3, padding=1))
            self.p3 = nn.Sequential(conv_relu(cin, c3[0], 1), conv_relu(c3[0], c3[1], 5, padding=2))
            self.p4 = nn.Sequential(nn.MaxPool2D(3, 1, 1), conv_relu(cin, c4, 1))

        def forward(self, x):
            return paddle.concat([self.p1(x), self.p2(x), self.p3(x), self.p4(x)], axis=1)

    def googlenet():
        return nn.Sequential(
            conv_relu(3, 64, 7, padding=3), nn.MaxPool2D(3, 2, 1),
            conv_relu(64, 64, 1), conv_relu(64, 192, 3, padding=1), nn.MaxPool2D(3, 2, 1),
            Inception(192, 64, (96, 128), (16, 32), 32), Inception(256, 128, (128, 192), (32, 96), 64),
            nn.MaxPool2D(3, 2, 1),
            Inception(480, 192, (96, 208), (16, 48), 64), Inception(512, 160, (112, 224), (24, 64), 64),
            Inception(512, 128, (128, 256), (24, 64), 64), Inception(512, 112, (144, 288), (32, 64), 64),
            Inception(528, 256, (160, 320), (32, 128), 128),
            nn.MaxPool2D(3, 2, 1),
            Inception(832, 256, (160, 320), (32, 128), 128), Inception(832, 384, (192, 384), (48, 128), 128),
            nn.AdaptiveAvgPool2D(1), nn.Flatten(), nn.Linear(1024, 1))

    class ConvBn(nn.Layer):
        def __init__(self, cin, cout, k, stride=1, relu=True):
            super().__init__()
            self.conv = nn.Conv2D(cin, cout, k, stride=stride, padding=(k - 1) // 2, bias_attr=False)
            self.bn = nn.BatchNorm2D(cout)  # momentum 0.9, epsilon 1e-5
            self.relu = relu

        def forward(self, x):
            y = self.bn(self.conv(x))
            return F.relu(y) if self.relu else y

    class Bottleneck(nn.Layer):
        def __init__(self, cin, width, stride, project):
            super().__init__()
            self.path = nn.Sequential(ConvBn(cin, width, 1), ConvBn(width, width, 3, stride),
                                      ConvBn(width, 4 * width, 1, relu=False))
            self.short = ConvBn(cin, 4 * width, 1, stride, relu=False) if project else None

        def forward(self, x):
            return F.relu(self.path(x) + (self.short(x) if self.short is not None else x))

    def resnet50():
        blocks, cin = [], 64
        for stage, (depth, width) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512])):
            for i in range(depth):
                blocks.append(Bottleneck(cin, width, 2 if stage > 0 and i == 0 else 1, project=i == 0))
                cin = 4 * width
        bound = 1.0 / math.sqrt(2048)  # the course sets the last layer's weights to U(±1/√2048)
        out = nn.Linear(2048, 1, weight_attr=paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound)))
        return nn.Sequential(ConvBn(3, 64, 7, 2), nn.MaxPool2D(3, 2, 1), *blocks,
                             nn.AdaptiveAvgPool2D(1), nn.Flatten(), out)

    build = {"alexnet": AlexNet, "lenet-palm": LeNet, "vgg16": vgg16, "googlenet": googlenet, "resnet50": resnet50}
    model = build[args.model]()
    params = sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)
    assert params == PARAMS[args.model], f"{args.model}: {params:,} parameters in Paddle"
    if args.model == "alexnet":
        # The multi-tensor kernel is the same update; Paddle 3.3's per-tensor Adam leaves the
        # CPU convolutions 4x slower after its first step (measured: 0.22 -> 0.93 s forward).
        opt = paddle.optimizer.Adam(learning_rate=0.001, parameters=model.parameters(), use_multi_tensor=True)
    else:
        decay = paddle.regularizer.L2Decay(WEIGHT_DECAY[args.model]) if args.model in WEIGHT_DECAY else None
        opt = paddle.optimizer.Momentum(learning_rate=0.001, momentum=0.9, parameters=model.parameters(),
                                        weight_decay=decay)

    def evaluate():
        model.eval()
        out = []
        with paddle.no_grad():
            for i in range(0, len(vx), 10):
                out.extend(model(paddle.to_tensor(normalize(vx[i : i + 10]))).numpy().ravel().tolist())
        return out

    return train_loop(args, tx, ty, vy, model, opt, evaluate, "paddle")


def torch_paddle_init(model):
    """Paddle's default scheme drawn in PyTorch: conv N(0, sqrt(2/fan_in)), linear Xavier-uniform, biases 0."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(m.weight)
                m.bias.zero_()
        if hasattr(model, "blocks"):  # ResNet-50: the course's U(±1/√2048) last layer
            bound = 1.0 / math.sqrt(2048)
            model.out.weight.uniform_(-bound, bound)


def worker_torch(args, tx, ty, vx, vy):
    import torch

    sys.path.insert(0, HERE)
    import torch_models

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = torch_models.build(args.model)
    if args.torch_init == "paddle":
        torch_paddle_init(model)
    if args.model == "alexnet":
        opt = torch.optim.Adam(model.parameters(), lr=0.001)
    else:
        # SGD's weight_decay adds decay·w to the gradient, which is Paddle's L2Decay.
        opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9,
                              weight_decay=WEIGHT_DECAY.get(args.model, 0.0))

    def evaluate():
        model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(vx), 10):
                out.extend(model(torch.from_numpy(normalize(vx[i : i + 10]))).ravel().tolist())
        return out

    return train_loop(args, tx, ty, vy, model, opt, evaluate, "torch")


def train_loop(args, tx, ty, vy, model, opt, evaluate, framework):
    """The course's `train_pm`: shuffled batches of 10, BCE with logits, validation per epoch."""
    import numpy as np

    rng = random.Random(args.seed)
    epochs = []
    for epoch in range(args.epochs):
        model.train()
        t0 = time.time()
        losses = []
        for batch_id, idx in enumerate(batches(len(tx), 10, rng)):
            x = normalize(tx[idx])
            y = ty[idx].reshape(-1, 1).astype(np.float32)
            if framework == "paddle":
                import paddle
                import paddle.nn.functional as F

                loss = F.binary_cross_entropy_with_logits(model(paddle.to_tensor(x)), paddle.to_tensor(y))
                loss.backward()
                opt.step()
                opt.clear_grad()
                value = float(loss.numpy())
            else:
                import torch

                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(torch.from_numpy(x)), torch.from_numpy(y))
                opt.zero_grad()
                loss.backward()
                opt.step()
                value = float(loss.item())
            losses.append(value * len(idx))
            if batch_id % 10 == 0 and args.verbose:
                print(f"epoch: {epoch}, batch_id: {batch_id}, loss is: {value:.4f}", file=sys.stderr, flush=True)
        train_s = time.time() - t0
        m = epoch_metrics(evaluate(), vy.tolist())
        m.update(epoch=epoch, train_loss=sum(losses) / len(tx), train_seconds=train_s)
        epochs.append(m)
        print(f"  {framework} {args.model} seed {args.seed} epoch {epoch + 1}: " + fmt_epoch(m), file=sys.stderr, flush=True)
    return epochs


def worker_palm_cnn(args):
    with tempfile.TemporaryDirectory() as out:
        cmd = [PALM_CNN, "train", "--model", args.model, "--data", args.data, "--seed", str(args.seed),
               "--epochs", str(args.epochs), "--init", "paddle", "--quiet", "--out", out]
        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        with open(os.path.join(out, "metrics.json")) as f:
            hist = json.load(f)
    epochs = []
    for e in hist["epochs"]:
        c = e.get("val_confusion") or {}
        m = {
            "epoch": e["epoch"],
            "accuracy": e["val_accuracy"],
            "loss": e["val_loss"],
            "auc": e["val_auc"],
            "positives": c.get("tp", 0) + c.get("fp", 0),
            "logit_std": e.get("val_logit_std", float("nan")),
            "collapsed": e.get("collapsed", False),
            "train_loss": e["train_loss"],
            "train_seconds": e["train_seconds"],
        }
        epochs.append(m)
        print(f"  palm-cnn {args.model} seed {args.seed} epoch {e['epoch'] + 1}: " + fmt_epoch(m), file=sys.stderr, flush=True)
    return epochs


def fmt_epoch(m):
    a = "  n/a " if m["auc"] is None else f"{m['auc']:.4f}"
    flag = "  COLLAPSED" if m["collapsed"] else ""
    return (f"acc {m['accuracy']:.4f}  loss {m['loss']:.4f}  AUC {a}  positives {m['positives']:3d}  "
            f"logit std {m['logit_std']:.2e}  ({m['train_seconds']:.0f} s){flag}")


def run_worker(args):
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.worker == "palm-cnn":
        epochs = worker_palm_cnn(args)
    else:
        tx, ty, vx, vy, _, _ = load_split(args.data, args.threads)
        epochs = (worker_paddle if args.worker == "paddle" else worker_torch)(args, tx, ty, vx, vy)
    with open(args.result, "w") as f:
        json.dump(epochs, f)


# ----------------------------------------------------------------------------- driver


def importable(module):
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def median(v):
    v = sorted(v)
    n = len(v)
    return None if n == 0 else (v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2)


def report(results, models, seeds, frameworks, epochs):
    lines = []
    for model in models:
        lines.append(f"\n### {model}: validation accuracy / AUC / predicted positives, per epoch\n")
        head = "| framework | seed | " + " | ".join(f"epoch {e + 1}" for e in range(epochs)) + " |"
        lines += [head, "|" + " --- |" * (2 + epochs)]
        for fw in frameworks:
            for seed in seeds:
                r = results.get((model, fw, seed))
                if r is None:
                    continue
                cells = []
                for m in r:
                    a = "n/a" if m["auc"] is None else f"{m['auc']:.3f}"
                    cells.append(f"{m['accuracy']:.4f} / {a} / {m['positives']}" + (" C" if m["collapsed"] else ""))
                lines.append(f"| {fw} | {seed} | " + " | ".join(cells) + " |")
        lines.append("")
        for fw in frameworks:
            last = [results[(model, fw, s)][-1] for s in seeds if (model, fw, s) in results]
            if last:
                aucs = [m["auc"] for m in last if m["auc"] is not None]
                med_auc = median(aucs)
                lines.append(
                    f"- {fw}: median over {len(last)} seeds at epoch {epochs}: accuracy {median([m['accuracy'] for m in last]):.4f}"
                    + (f", AUC {med_auc:.4f}" if med_auc is not None else "")
                    + f"; runs predicting one class: {sum(1 for m in last if m['positives'] in (0, 400))}"
                    + f"; collapsed: {sum(1 for m in last if m['collapsed'])}"
                )
    return "\n".join(lines)


def merge(args):
    """The report of several --json files, as if they had been one run."""
    results, data, baseline = {}, None, None
    for path in args.merge:
        with open(path) as f:
            dump = json.load(f)
        data, baseline = data or dump["data"], baseline or dump["baseline"]
        for r in dump["runs"]:
            results[(r["model"], r["framework"], r["seed"])] = r["epochs"]
    models = [m for m in MODELS if any(k[0] == m for k in results)]
    seeds = sorted({k[2] for k in results})
    frameworks = [fw for fw in FRAMEWORKS if any(k[1] == fw for k in results)]
    epochs = max(len(r) for r in results.values())
    best = max(baseline.values())
    base_line = "one-statistic baseline (best threshold on the validation images): " + ", ".join(
        f"{k} {v:.4f}" for k, v in baseline.items()) + f"; best {best:.4f}"
    text = report(results, models, seeds, frameworks, epochs)
    print(f"data: {data}\n{base_line}\n{text}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"data: `{data}`\n\n{base_line}\n{text}\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="PALM-layout folder (default: `palm-cnn data path`)")
    p.add_argument("--models", nargs="+", default=["alexnet", "lenet-palm"], choices=MODELS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--torch-init", choices=["paddle", "pytorch"], default="paddle")
    p.add_argument("--json", help="write every run's per-epoch metrics here")
    p.add_argument("--markdown", help="write the report tables here")
    p.add_argument("--baseline-only", action="store_true", help="only the one-statistic baseline")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="no training: print the report of runs saved earlier with --json (several files, e.g. one "
                        "per framework run in parallel)")
    p.add_argument("--verbose", action="store_true", help="the course's per-batch loss lines")
    p.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return run_worker(args)
    if args.merge:
        return merge(args)

    data = args.data or default_data()
    print(f"data: {data}", file=sys.stderr)
    _, _, vx, vy, _, _ = load_split(data, args.threads)
    baseline = one_statistic_baseline(vx, vy)
    best = max(baseline.values())
    base_line = "one-statistic baseline (best threshold on the validation images): " + ", ".join(
        f"{k} {v:.4f}" for k, v in baseline.items()
    ) + f"; best {best:.4f}; all-positive {max(vy.mean(), 1 - vy.mean()):.4f}"
    print(base_line)
    if args.baseline_only:
        return

    frameworks = []
    for fw in args.frameworks:
        ok = os.path.exists(PALM_CNN) if fw == "palm-cnn" else importable(fw)
        if ok:
            frameworks.append(fw)
        else:
            why = "no release build (cargo build --release)" if fw == "palm-cnn" else f"`import {fw}` fails"
            print(f"skipping {fw}: {why}", file=sys.stderr)
    results = {}
    for model in args.models:
        for seed in args.seeds:
            # Frameworks interleaved per seed, so a partial run still compares them.
            for fw in frameworks:
                with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
                    result = tmp.name
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", fw, "--model", model, "--seed", str(seed),
                       "--data", data, "--epochs", str(args.epochs), "--threads", str(args.threads),
                       "--torch-init", args.torch_init, "--result", result] + (["--verbose"] if args.verbose else [])
                t0 = time.time()
                done = subprocess.run(cmd)
                if done.returncode != 0:
                    print(f"{fw} {model} seed {seed}: failed (exit {done.returncode})", file=sys.stderr)
                    continue
                with open(result) as f:
                    results[(model, fw, seed)] = json.load(f)
                os.unlink(result)
                print(f"{fw} {model} seed {seed}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
                if args.json:
                    dump = {"data": data, "baseline": baseline, "runs": [
                        {"model": m, "framework": f, "seed": s, "epochs": r} for (m, f, s), r in results.items()]}
                    with open(args.json, "w") as f:
                        json.dump(dump, f, indent=1)
    text = report(results, args.models, args.seeds, frameworks, args.epochs)
    print(text)
    print("\n" + base_line)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"data: `{data}`\n\n{base_line}\n{text}\n")


if __name__ == "__main__":
    main()
