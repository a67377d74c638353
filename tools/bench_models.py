"""Benchmark every registered model with `python -m medjax.bench`, one process each, and print
the README's model table (parameters, GFLOPs per image, training and eval images/s).

    python tools/bench_models.py --out bench_models.jsonl [--size 28] [--models a,b] [--batch 32]
    python tools/bench_models.py --out cost.jsonl --size 224 --cost-only   # parameters, GFLOPs

--cost-only counts each model at ImageNet settings (3 channels, 1000 classes, the ImageNet stem;
volumes as 16 x 112 x 112 x 3 clips of 400 classes) from shapes alone, without timing.

Volumes (3D models) are benchmarked at size^3 with one channel; ensembles as ('cnn',
'resnet18'). A model that fails is reported with its error and the table goes on.
"""

import argparse
import json
import subprocess
import sys

VOLUME_MODELS = ("cnn3d", "resnet3d_18", "cnn_rnn")
EXTRA = {
    "ensemble": ["--model-arg", "members=('cnn', 'resnet18')"],
    "vit_ti": ["--model-arg", "patch_size=4"],
    "vit_s": ["--model-arg", "patch_size=4"],
    "vit_b": ["--model-arg", "patch_size=4"],
}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--models", default="", help="comma-separated; default: all registered")
    p.add_argument("--timeout", type=int, default=600, help="seconds per model")
    p.add_argument("--cost-only", action="store_true", help="parameters and GFLOPs, no timing")
    args = p.parse_args()
    from medjax.models import MODELS

    names = args.models.split(",") if args.models else MODELS.names()
    rows = []
    with open(args.out, "a") as f:
        for name in names:
            cmd = [sys.executable, "-m", "medjax.bench", "--model", name]
            cmd += ["--image-size", str(args.size), "--batch-size", str(args.batch)]
            cmd += ["--steps", str(args.steps), "--warmup", "1", "--dtype", args.dtype]
            if args.cost_only and name in VOLUME_MODELS:
                cmd += ["--cost-only", "--depth", "16", "--image-size", "112", "--channels", "3"]
                cmd += ["--num-classes", "400"]  # Kinetics-400 clips, as torchvision's R3D-18
            elif args.cost_only:
                cmd += ["--cost-only", "--channels", "3", "--num-classes", "1000"]
                cmd += ["--model-arg", "stem=imagenet"]
            elif name in VOLUME_MODELS:
                cmd += ["--depth", str(args.size)]
            cmd += EXTRA.get(name, []) if args.size <= 64 or not name.startswith("vit") else []
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                out = subprocess.CompletedProcess(cmd, 1, "", f"over {args.timeout} s")
            if out.returncode:
                row = {"model": name, "error": out.stderr.strip().splitlines()[-1:]}
            else:
                row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(json.dumps(row), file=sys.stderr, flush=True)
    if args.cost_only:
        print("| model | input | classes | parameters | GFLOPs/image |")
        print("|---|---|---|---|---|")
        for r in rows:
            shape = "x".join(map(str, r.get("input_shape", [])))
            print(
                f"| `{r['model']}` | {shape} | {r.get('num_classes', '-')} | "
                f"{r.get('parameters', 0) / 1e6:.2f}M | {r.get('gflops_per_image', r.get('error'))} |"
            )
        return
    print("| model | input | parameters | GFLOPs/image | train img/s | eval img/s | compile s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| `{r['model']}` | - | - | - | failed: {r['error']} | - | - |")
            continue
        print(
            f"| `{r['model']}` | {'x'.join(map(str, r['input_shape']))} | "
            f"{r['parameters'] / 1e6:.2f}M | {r['gflops_per_image']} | "
            f"{r['train_images_per_s']} | {r['eval_images_per_s']} | {r['compile_s']} |"
        )


if __name__ == "__main__":
    main()
