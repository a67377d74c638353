"""The PyTorch trainer that medjax's speed is measured against (tools/compare_torch.sh).

A copy of ../shared/bench/torch_resnet18_reference.py, the project's anchor (ResNet-18 in the
MedMNIST style: 3x3 stem, no max-pool, Adam 1e-3, on a MedMNIST-format .npz), with one flag
added: `--autocast bfloat16` runs forward and loss under torch.autocast("cpu", bfloat16), the
mixed precision PyTorch offers on CPUs, to compare with medjax's `model.dtype=bfloat16`.

    python tools/torch_resnet18_reference.py DATA.npz --steps 20 [--autocast bfloat16]

Prints one JSON line with the steady-state training images/s.
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.sc = nn.Sequential()
        if stride != 1 or cin != cout:
            self.sc = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.sc(x))


class ResNet18(nn.Module):
    def __init__(self, cin, ncls):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(cin, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
        layers, c = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [Block(c, cout, stride), Block(cout, cout, 1)]
            c = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, ncls)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("npz")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--autocast", choices=["none", "bfloat16"], default="none")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    d = np.load(a.npz)
    x = torch.tensor(d["train_images"], dtype=torch.float32)[:, None] / 255.0
    y = torch.tensor(d["train_labels"].reshape(-1), dtype=torch.long)
    model = ResNet18(1, int(y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    autocast = a.autocast == "bfloat16"

    def step():
        idx = torch.tensor(rng.choice(len(x), a.batch, replace=False))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(model((x[idx] - 0.5) / 0.5), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    seconds = time.perf_counter() - start
    out = {
        "framework": "torch " + torch.__version__,
        "autocast": a.autocast,
        "threads": torch.get_num_threads(),
        "train_images_per_s": round(a.steps * a.batch / seconds, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
