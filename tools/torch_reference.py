"""Reference outputs of a torchvision model with random weights, for tests/test_weights.py.

Run with a Python that has torch and torchvision (medjax itself needs neither):

    python tools/torch_reference.py --model resnet18 --num-classes 10 --image-size 64 --out DIR

writes DIR/weights.pth (torch.save of the state dict), DIR/input.npy (NCHW float32, batch 2)
and DIR/logits.npy (eval mode), and DIR/gray_input.npy (N, 1, H, W) with DIR/gray_logits.npy
(the model's logits for it replicated to RGB). Every BatchNorm gets random affine parameters and running
statistics too, so a wrong batch-norm mapping cannot pass unnoticed. --relu replaces ReLU6
by ReLU (MobileNetV2), for a medjax model without ReLU6; --bn-eps overrides every BatchNorm's
eps. `--fixture PATH` writes the small checkpoint tests/data/torch_checkpoint.pth instead.
"""

import argparse
import collections
import pathlib

import numpy as np
import torch
import torchvision


def randomise(model: torch.nn.Module, x: torch.Tensor, seed: int) -> None:
    """Random weights everywhere, activations kept O(1) through deep networks: random convs,
    Linears and batch-norm affine parameters, then batch-norm statistics measured on `x` (each
    channel's own mean and variance, so a swapped mapping changes the logits)."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(shape, low, high):
        return torch.rand(shape, generator=gen) * (high - low) + low

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(uniform(m.bias.shape, -0.1, 0.1))
        model.eval()
        for m in norms:  # one pass in train mode: running stats = this batch's statistics
            m.weight.copy_(uniform(m.weight.shape, 0.5, 1.5))
            m.bias.copy_(uniform(m.bias.shape, -0.2, 0.2))
            m.reset_running_stats()
            m.momentum = None
            m.train()
        model(x)
        model.eval()
        for m in norms:
            m.momentum = 0.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a torchvision.models builder name")
    parser.add_argument("--fixture", type=pathlib.Path, help="only write the reader's fixture")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--relu", action="store_true", help="replace ReLU6 by ReLU")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16", "bfloat16"],
        help="save the weights in this dtype (the logits use the same rounded weights)",
    )
    parser.add_argument("--bn-eps", type=float, help="set every BatchNorm's eps to this")
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args()
    if args.fixture:
        return write_fixture(args.fixture)
    if not (args.model and args.out):
        parser.error("--model and --out are required (or --fixture)")

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    model = getattr(torchvision.models, args.model)(weights=None, num_classes=args.num_classes)
    if args.relu:
        for parent in model.modules():
            for name, child in parent.named_children():
                if isinstance(child, torch.nn.ReLU6):
                    setattr(parent, name, torch.nn.ReLU())
    for m in model.modules():
        if args.bn_eps is not None and isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eps = args.bn_eps
    gen = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn((args.batch, 3, args.image_size, args.image_size), generator=gen)
    calibration = torch.randn((8, *x.shape[1:]), generator=gen)
    randomise(model, calibration, args.seed)
    dtype = getattr(torch, args.dtype)
    with torch.no_grad():  # round to the saved dtype, so the logits are those of the file
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.to(dtype).float())
    model.eval()
    gray = torch.randn((args.batch, 1, args.image_size, args.image_size), generator=gen)
    with torch.no_grad():
        logits, gray_logits = model(x), model(gray.expand(-1, 3, -1, -1))
    args.out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()  # an OrderedDict with _metadata, as users save it
    for key, t in state.items():
        state[key] = t.to(dtype) if t.is_floating_point() else t
    torch.save(state, args.out / "weights.pth")
    np.save(args.out / "input.npy", x.numpy())
    np.save(args.out / "logits.npy", logits.numpy())
    np.save(args.out / "gray_input.npy", gray.numpy())
    np.save(args.out / "gray_logits.npy", gray_logits.numpy())


def write_fixture(path: pathlib.Path) -> None:
    """The small checkpoint tests/data/torch_checkpoint.pth: a timm-style dict wrapping a
    DataParallel ('module.'-prefixed) state dict of tensors that exercise the reader: views
    with strides and offsets, shared storage, 16-bit floats, integers, a Parameter, uint16
    (pickled with _rebuild_tensor_v3), a 0-d tensor; values are aranges, so tests know them."""
    base = torch.arange(20, dtype=torch.float32)
    state = collections.OrderedDict()
    state["module.a"] = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state["module.t"] = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()
    state["module.s"] = base[5:11].view(2, 3)  # offset 5 into a storage of 20
    state["module.s2"] = base[::4]  # stride 4, the same storage
    state["module.h"] = torch.arange(6, dtype=torch.float16)
    state["module.b"] = torch.arange(6, dtype=torch.bfloat16)
    state["module.l"] = torch.arange(5, dtype=torch.int64)
    state["module.u"] = torch.arange(4).to(torch.uint16)
    state["module.m"] = torch.tensor([True, False])
    state["module.p"] = torch.nn.Parameter(torch.full((2,), 0.5))
    state["module.z"] = torch.tensor(2.5)
    checkpoint = {"epoch": 3, "args": argparse.Namespace(lr=0.1), "state_dict": state}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


if __name__ == "__main__":
    main()
