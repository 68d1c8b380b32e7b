#!/usr/bin/env python3
"""Checks palm-cnn checkpoints against PyTorch.

    palm-cnn sample --checkpoint runs/alexnet/model.safetensors --out sample.safetensors
    python3 tools/torch_roundtrip.py runs/alexnet/model.safetensors sample.safetensors [--write-back back.safetensors]

Builds the equivalent PyTorch model (lenet-mnist, lenet-palm, alexnet or resnet50, from the file's
metadata), loads our tensors by name (conv weights [out, in, k, k], linear [out, in]), runs
the sample's `input` and checks the logits agree with the sample's `logits` to 1e-4. With
--write-back, saves the PyTorch model's state as a checkpoint palm-cnn loads (`palm-cnn eval`).

dfdx stores Dropout's probability as an F64 scalar `drop1.p` / `drop2.p`; it is ignored here
and not written back (palm-cnn then keeps its default 0.5).

Needs only torch (the safetensors format is read and written here). Without torch it prints
a message and exits 0.
"""
import json
import struct
import sys


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {}) or {}
    body = data[8 + n :]
    return header, meta, body


def write_safetensors(path, tensors, meta):
    header, chunks, off = {"__metadata__": meta}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().to(torch.float32)
        b = t.numpy().tobytes() if HAVE_NUMPY else struct.pack(f"<{t.numel()}f", *t.flatten().tolist())
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


def models():
    nn = torch.nn

    def lenet(in_ch, fc_in, out):
        return nn.Sequential(
            __import__("collections").OrderedDict(
                conv1=nn.Conv2d(in_ch, 6, 5), act1=nn.Sigmoid(), pool1=nn.MaxPool2d(2, 2),
                conv2=nn.Conv2d(6, 16, 5), act2=nn.Sigmoid(), pool2=nn.MaxPool2d(2, 2),
                conv3=nn.Conv2d(16, 120, 4), act3=nn.Sigmoid(), flatten=nn.Flatten(),
                fc1=nn.Linear(fc_in, 64), act4=nn.Sigmoid(), fc2=nn.Linear(64, out),
            )
        )

    def alexnet():
        return nn.Sequential(
            __import__("collections").OrderedDict(
                conv1=nn.Conv2d(3, 96, 11, stride=4, padding=5), act1=nn.ReLU(), pool1=nn.MaxPool2d(2, 2),
                conv2=nn.Conv2d(96, 256, 5, padding=2), act2=nn.ReLU(), pool2=nn.MaxPool2d(2, 2),
                conv3=nn.Conv2d(256, 384, 3, padding=1), act3=nn.ReLU(),
                conv4=nn.Conv2d(384, 384, 3, padding=1), act4=nn.ReLU(),
                conv5=nn.Conv2d(384, 256, 3, padding=1), act5=nn.ReLU(), pool5=nn.MaxPool2d(2, 2),
                flatten=nn.Flatten(), fc1=nn.Linear(12544, 4096), act6=nn.ReLU(), drop1=nn.Dropout(0.5),
                fc2=nn.Linear(4096, 4096), act7=nn.ReLU(), drop2=nn.Dropout(0.5), fc3=nn.Linear(4096, 1),
            )
        )

    def resnet50():
        sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "bench"))
        import torch_models

        return torch_models.ResNet50()

    return {
        "lenet-mnist": lambda: lenet(1, 120, 10),
        "lenet-palm": lambda: lenet(3, 300_000, 1),
        "alexnet": alexnet,
        "resnet50": resnet50,
    }


def tensor(header, body, name):
    e = header[name]
    if e["dtype"] != "F32":
        raise SystemExit(f"{name}: dtype {e['dtype']}, expected F32")
    s, t = e["data_offsets"]
    return torch.frombuffer(bytearray(body[s:t]), dtype=torch.float32).reshape(e["shape"])


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    back = argv[argv.index("--write-back") + 1] if "--write-back" in argv else None
    if back:
        args.remove(back)
    if len(args) != 2:
        raise SystemExit(__doc__)
    ck_path, sample_path = args
    header, meta, body = read_safetensors(ck_path)
    kind = meta.get("model")
    if kind not in models():
        raise SystemExit(f"{ck_path}: metadata names no known model ({kind!r})")
    model = models()[kind]()
    state = {k: tensor(header, body, k) for k, e in header.items() if not (e["dtype"] == "F64" and e["shape"] == [])}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # PyTorch counts batch-norm steps (`num_batches_tracked`); palm-cnn, like Paddle, does not.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"missing {missing}, unexpected {unexpected}")
    model.eval()
    sh, _, sb = read_safetensors(sample_path)
    x, want = tensor(sh, sb, "input"), tensor(sh, sb, "logits")
    with torch.no_grad():
        got = model(x)
    err = (got - want).abs().max().item()
    print(f"{kind}: max |logit difference| = {err:.3g} over {tuple(got.shape)}")
    if not err <= 1e-4:
        raise SystemExit("FAIL: logits differ by more than 1e-4")
    if back:
        state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        write_safetensors(back, state, {"model": kind, "producer": "torch_roundtrip.py"})
        print(f"wrote {back}")
    print("OK")


if __name__ == "__main__":
    try:
        import torch
    except ImportError:
        print("torch is not importable; skipping the PyTorch round trip (pip install torch)")
        sys.exit(0)
    try:
        import numpy  # noqa: F401

        HAVE_NUMPY = True
    except ImportError:
        HAVE_NUMPY = False
    globals()["HAVE_NUMPY"] = HAVE_NUMPY
    main(sys.argv[1:])
