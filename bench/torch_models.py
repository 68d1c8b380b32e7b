"""PyTorch versions of palm-cnn's models (src/models/lenet.rs, src/models/alexnet.rs).

Attribute names match the Rust layer names (conv1, act1, pool1, ..., fc3), so the
state_dict keys are exactly the tensor names of a palm-cnn safetensors checkpoint
(`conv1.weight`, `conv1.bias`, ...), and layouts are PyTorch's (conv [out, in, k, k],
linear [out, in]). palm-cnn checkpoints also hold dropout probabilities as `drop1.p`,
`drop2.p` (F64 scalars) and the model kind in the metadata (`"model": "alexnet"`);
`load_checkpoint` drops the `.p` entries and loads the rest strictly.

    python3 bench/torch_models.py            # builds each model, checks parameter counts
"""

import json
import struct

import torch
from torch import nn


class _Stack(nn.Module):
    """Runs its children in the order they were assigned (like the Rust tuple of layers)."""

    def forward(self, x):
        for layer in self.children():
            x = layer(x)
        return x


class LeNetMnist(_Stack):
    """1x28x28 -> 10 logits. 41,806 parameters."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)  # 6x24x24
        self.act1 = nn.Sigmoid()
        self.pool1 = nn.MaxPool2d(2, 2)  # 6x12x12
        self.conv2 = nn.Conv2d(6, 16, 5)  # 16x8x8
        self.act2 = nn.Sigmoid()
        self.pool2 = nn.MaxPool2d(2, 2)  # 16x4x4
        self.conv3 = nn.Conv2d(16, 120, 4)  # 120x1x1
        self.act3 = nn.Sigmoid()
        self.flatten = nn.Flatten()  # 120
        self.fc1 = nn.Linear(120, 64)
        self.act4 = nn.Sigmoid()
        self.fc2 = nn.Linear(64, 10)


class LeNetPalm(_Stack):
    """3x224x224 -> 1 logit. 19,233,841 parameters, nearly all in fc1 (300,000 -> 64)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)  # 6x220x220
        self.act1 = nn.Sigmoid()
        self.pool1 = nn.MaxPool2d(2, 2)  # 6x110x110
        self.conv2 = nn.Conv2d(6, 16, 5)  # 16x106x106
        self.act2 = nn.Sigmoid()
        self.pool2 = nn.MaxPool2d(2, 2)  # 16x53x53
        self.conv3 = nn.Conv2d(16, 120, 4)  # 120x50x50
        self.act3 = nn.Sigmoid()
        self.flatten = nn.Flatten()  # 300,000
        self.fc1 = nn.Linear(300_000, 64)
        self.act4 = nn.Sigmoid()
        self.fc2 = nn.Linear(64, 1)


class AlexNet(_Stack):
    """Course single-tower AlexNet: 3x224x224 -> 1 logit. 71,916,929 parameters."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, stride=4, padding=5)  # 96x56x56
        self.act1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)  # 96x28x28
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2)  # 256x28x28
        self.act2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)  # 256x14x14
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.act3 = nn.ReLU()
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1)
        self.act4 = nn.ReLU()
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1)  # 256x14x14
        self.act5 = nn.ReLU()
        self.pool5 = nn.MaxPool2d(2, 2)  # 256x7x7
        self.flatten = nn.Flatten()  # 12,544
        self.fc1 = nn.Linear(12_544, 4096)
        self.act6 = nn.ReLU()
        self.drop1 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(4096, 4096)
        self.act7 = nn.ReLU()
        self.drop2 = nn.Dropout(0.5)
        self.fc3 = nn.Linear(4096, 1)


# model kind (palm-cnn's --model / checkpoint metadata) -> (class, input shape, parameters)
MODELS = {
    "lenet-mnist": (LeNetMnist, (1, 28, 28), 41_806),
    "lenet-palm": (LeNetPalm, (3, 224, 224), 19_233_841),
    "alexnet": (AlexNet, (3, 224, 224), 71_916_929),
}


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(kind: str) -> nn.Module:
    cls, _, expected = MODELS[kind]
    model = cls()
    n = param_count(model)
    assert n == expected, f"{kind}: {n:,} parameters, expected {expected:,}"
    return model


_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file, without the `safetensors` package."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + n :]
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        t = torch.frombuffer(bytearray(body[start:end]), dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(info["shape"])
    return tensors, meta


def load_checkpoint(path, kind=None) -> nn.Module:
    """A model loaded from a palm-cnn checkpoint; `kind` defaults to the file's metadata."""
    tensors, meta = read_safetensors(path)
    kind = kind or meta.get("model")
    if kind not in MODELS:
        raise ValueError(f"{path}: unknown model kind {kind!r}; pass one of {sorted(MODELS)}")
    model = build(kind)
    state = {k: v.to(torch.float32) for k, v in tensors.items() if not k.endswith(".p")}
    model.load_state_dict(state, strict=True)
    return model


if __name__ == "__main__":
    for kind, (cls, shape, expected) in MODELS.items():
        model = build(kind).eval()
        with torch.no_grad():
            out = model(torch.zeros(2, *shape))
        keys = list(model.state_dict())
        print(f"{kind:12s} {param_count(model):>12,} params  out {tuple(out.shape)}  keys {keys[0]} .. {keys[-1]}")
