"""PyTorch versions of palm-cnn's models (src/models/: LeNet, AlexNet, VGG-16, GoogLeNet, ResNet-50).

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


def _add_classifier(stack, features):
    """AlexNet's and VGG's head: flatten, fc 4096 ReLU dropout 0.5, fc 4096 ReLU dropout 0.5,
    fc 1 (names flatten, fc1, act6, drop1, fc2, act7, drop2, fc3)."""
    stack.flatten = nn.Flatten()
    stack.fc1 = nn.Linear(features, 4096)
    stack.act6 = nn.ReLU()
    stack.drop1 = nn.Dropout(0.5)
    stack.fc2 = nn.Linear(4096, 4096)
    stack.act7 = nn.ReLU()
    stack.drop2 = nn.Dropout(0.5)
    stack.fc3 = nn.Linear(4096, 1)


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
        _add_classifier(self, 12_544)  # 256x7x7


class Vgg16(_Stack):
    """Course VGG-16: 13 conv k3 p1 + ReLU in five blocks, max-pool 2/2 after each, three fc.
    134,264,641 parameters."""

    def __init__(self):
        super().__init__()
        cin = 3
        for b, widths in enumerate([[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3], start=1):
            for i, w in enumerate(widths, start=1):
                setattr(self, f"conv{b}_{i}", nn.Conv2d(cin, w, 3, padding=1))
                setattr(self, f"act{b}_{i}", nn.ReLU())
                cin = w
            setattr(self, f"pool{b}", nn.MaxPool2d(2, 2))
        _add_classifier(self, 25_088)  # 512x7x7


class Inception(nn.Module):
    """Four branches (1x1 | 1x1, 3x3 | 1x1, 5x5 | max-pool 3/1, 1x1), ReLU after every
    convolution, concatenated along channels."""

    def __init__(self, cin, c1, c2, c3, c4):
        super().__init__()
        self.p1_1 = nn.Conv2d(cin, c1, 1)
        self.p2_1 = nn.Conv2d(cin, c2[0], 1)
        self.p2_2 = nn.Conv2d(c2[0], c2[1], 3, padding=1)
        self.p3_1 = nn.Conv2d(cin, c3[0], 1)
        self.p3_2 = nn.Conv2d(c3[0], c3[1], 5, padding=2)
        self.p4_1 = nn.MaxPool2d(3, 1, 1)
        self.p4_2 = nn.Conv2d(cin, c4, 1)

    def forward(self, x):
        r = torch.relu
        return torch.cat(
            [
                r(self.p1_1(x)),
                r(self.p2_2(r(self.p2_1(x)))),
                r(self.p3_2(r(self.p3_1(x)))),
                r(self.p4_2(self.p4_1(x))),
            ],
            dim=1,
        )


class GoogLeNet(_Stack):
    """Course GoogLeNet (stride-1 first convolution, no auxiliary heads). 5,974,577 parameters."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 64, 7, padding=3), nn.ReLU())
        self.pool1 = nn.MaxPool2d(3, 2, 1)
        self.conv2 = nn.Sequential(nn.Conv2d(64, 64, 1), nn.ReLU(), nn.Conv2d(64, 192, 3, padding=1), nn.ReLU())
        self.pool2 = nn.MaxPool2d(3, 2, 1)
        self.block3_1 = Inception(192, 64, (96, 128), (16, 32), 32)
        self.block3_2 = Inception(256, 128, (128, 192), (32, 96), 64)
        self.pool3 = nn.MaxPool2d(3, 2, 1)
        self.block4_1 = Inception(480, 192, (96, 208), (16, 48), 64)
        self.block4_2 = Inception(512, 160, (112, 224), (24, 64), 64)
        self.block4_3 = Inception(512, 128, (128, 256), (24, 64), 64)
        self.block4_4 = Inception(512, 112, (144, 288), (32, 64), 64)
        self.block4_5 = Inception(528, 256, (160, 320), (32, 128), 128)
        self.pool4 = nn.MaxPool2d(3, 2, 1)
        self.block5_1 = Inception(832, 256, (160, 320), (32, 128), 128)
        self.block5_2 = Inception(832, 384, (192, 384), (48, 128), 128)
        self.pool5 = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(1024, 1)


class ConvBn(nn.Module):
    """The course's ConvBNLayer: convolution without bias, padding (k-1)/2, batch norm
    (eps 1e-5, running = 0.9 running + 0.1 batch), optional ReLU. Names `conv`, `bn` as in
    palm-cnn's checkpoints."""

    def __init__(self, cin, cout, k, stride=1, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
        self.relu = relu

    def forward(self, x):
        y = self.bn(self.conv(x))
        return torch.relu(y) if self.relu else y


class Bottleneck(nn.Module):
    """1x1 ConvBn ReLU, 3x3 ConvBn ReLU (the block's stride), 1x1 ConvBn to 4x width; added to
    the input, or to a 1x1 ConvBn projection `short` of it, then ReLU."""

    def __init__(self, cin, width, stride, project):
        super().__init__()
        self.conv0 = ConvBn(cin, width, 1)
        self.conv1 = ConvBn(width, width, 3, stride)
        self.conv2 = ConvBn(width, 4 * width, 1, relu=False)
        self.short = ConvBn(cin, 4 * width, 1, stride, relu=False) if project else None

    def forward(self, x):
        y = self.conv2(self.conv1(self.conv0(x)))
        return torch.relu(y + (self.short(x) if self.short is not None else x))


class ResNet50(nn.Module):
    """Course ResNet-50: blocks `bb_<stage>_<i>`, depths 3, 4, 6, 3. 23,510,081 parameters."""

    def __init__(self):
        super().__init__()
        self.conv = ConvBn(3, 64, 7, 2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.blocks = []
        cin = 64
        for stage, (depth, width) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512])):
            for i in range(depth):
                block = Bottleneck(cin, width, 2 if stage > 0 and i == 0 else 1, project=i == 0)
                setattr(self, f"bb_{stage}_{i}", block)
                self.blocks.append(block)
                cin = 4 * width
        self.out = nn.Linear(2048, 1)

    def forward(self, x):
        x = self.pool(self.conv(x))
        for b in self.blocks:
            x = b(x)
        return self.out(x.mean(dim=(2, 3)))


# model kind (palm-cnn's --model / checkpoint metadata) -> (class, input shape, parameters)
MODELS = {
    "lenet-mnist": (LeNetMnist, (1, 28, 28), 41_806),
    "lenet-palm": (LeNetPalm, (3, 224, 224), 19_233_841),
    "alexnet": (AlexNet, (3, 224, 224), 71_916_929),
    "vgg16": (Vgg16, (3, 224, 224), 134_264_641),
    "googlenet": (GoogLeNet, (3, 224, 224), 5_974_577),
    "resnet50": (ResNet50, (3, 224, 224), 23_510_081),
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
    missing, unexpected = model.load_state_dict(state, strict=False)
    # PyTorch counts batch-norm steps (`num_batches_tracked`); palm-cnn, like Paddle, does not.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: missing {missing}, unexpected {unexpected}")
    return model


if __name__ == "__main__":
    for kind, (cls, shape, expected) in MODELS.items():
        model = build(kind).eval()
        with torch.no_grad():
            out = model(torch.zeros(2, *shape))
        keys = list(model.state_dict())
        print(f"{kind:12s} {param_count(model):>12,} params  out {tuple(out.shape)}  keys {keys[0]} .. {keys[-1]}")
