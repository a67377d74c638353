"""The PyTorch side of tools/gpu_bench.sh: torchvision's ResNet-50 and ViT-B/16 trained on random
data, as fast as PyTorch's usual recipe makes them (torch.compile, channels-last memory, bf16
autocast), with the optimizer medjax trains with by default (Adam, lr 1e-3), so that medjax's own
numbers have a reference on the same device.

    python tools/torch_gpu_bench.py --model resnet50 --batch-size 256
    python tools/torch_gpu_bench.py --model vit_b_16 --batch-size 256 --steps 20
    python tools/torch_gpu_bench.py --model resnet50 --image-size 32 --batch-size 2 --no-compile

Prints one JSON line per model with the fields medjax.bench prints for a train step
(train_images_per_s, train_step_ms, compile_s, step_gflops, mfu, device_kind), plus
"framework": "torch". When the batch does not fit it is halved until it does, and the line says
which batch ran. The FLOP count is PyTorch's own (torch.utils.flop_counter: forward and
backward matrix products and convolutions), so it is close to XLA's but not the same count.
Needs torch and torchvision only; medjax's peak table is read from medjax/perf/mfu.py.
"""

import argparse
import json
import os
import sys
import time

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from medjax.perf.mfu import peak_flops, utilisation  # noqa: E402  (no jax needed)

MODELS = {"resnet50": torchvision.models.resnet50, "vit_b_16": torchvision.models.vit_b_16}


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), action="append", required=True)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3, help="steps after the compiling one")
    p.add_argument("--no-compile", action="store_true", help="eager (a CPU smoke test)")
    p.add_argument("--peak-flops", type=float, help="one device's peak bf16 FLOP/s")
    return p.parse_args(argv)


def build(name, args, device):
    kwargs = {"image_size": args.image_size} if name.startswith("vit") else {}
    model = MODELS[name](num_classes=args.num_classes, **kwargs).to(device)
    model = model.to(memory_format=torch.channels_last)
    # Fused Adam runs the update as a few kernels on CUDA; it is not available on CPU.
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device.type == "cuda")
    forward = model if args.no_compile else torch.compile(model)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(images, labels):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_fn(forward(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return model, step


def batch(args, n, device):
    images = torch.randn(n, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(0, args.num_classes, (n,), device=device)
    return images.contiguous(memory_format=torch.channels_last), labels


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_flops(model, args, device) -> float:
    """Forward and backward FLOPs of one image, counted by PyTorch on the eager model (on two
    images: BatchNorm refuses one with 1x1 maps)."""
    from torch.utils.flop_counter import FlopCounterMode

    images, labels = batch(args, 2, device)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def run(name, args, device, n) -> dict:
    model, step = build(name, args, device)
    images, labels = batch(args, n, device)
    start = time.perf_counter()
    step(images, labels)  # compiles (torch.compile is lazy) and allocates
    sync(device)
    compile_s = time.perf_counter() - start
    for _ in range(args.warmup):
        step(images, labels)
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step(images, labels)
    sync(device)
    seconds = (time.perf_counter() - start) / args.steps
    if not torch.isfinite(loss):
        raise RuntimeError(f"{name}: the loss is {loss.item()} after {args.steps} steps")
    flops = step_flops(model, args, device) * n
    kind = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_flops(kind, "bfloat16", args.peak_flops)
    used = utilisation(flops, seconds, peak)
    return {
        "framework": "torch",
        "model": name,
        "input_shape": [args.image_size, args.image_size, 3],
        "num_classes": args.num_classes,
        "batch_size": n,
        "dtype": "bfloat16",
        "compiled": not args.no_compile,
        "channels_last": True,
        "optimizer": "adam",
        "train_images_per_s": round(n / seconds, 1),
        "train_step_ms": round(seconds * 1e3, 3),
        "compile_s": round(compile_s, 2),
        "step_gflops": round(flops / 1e9, 3),
        "step_tflops_per_s": round(flops / seconds / 1e12, 3),
        "peak_tflops": peak and round(peak / 1e12, 1),
        "mfu": None if used is None else round(used, 4),
        "device_kind": kind,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }


def main(argv=None):
    args = parse(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    for name in args.model:
        n, tried = args.batch_size, []
        while True:
            try:
                row = run(name, args, device, n)
                break
            except Exception as e:  # torch.compile may wrap the allocator's OutOfMemoryError
                if "out of memory" not in str(e).lower():
                    raise
                tried.append(n)
                torch._dynamo.reset()
                torch.cuda.empty_cache()
                if n == 1:
                    raise
                n //= 2
        if tried:
            row["out_of_memory_at"] = tried
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
