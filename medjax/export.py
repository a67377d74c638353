"""A finished run's inference function as StableHLO (`jax.export`), loadable with jax alone.

    python -m medjax.export --workdir runs/mri --out exported/mri

writes into DIR:
- model.stablehlo: preprocessed images (batch, *input shape) float32 -> class probabilities
  (batch, classes), with the run's flip TTA when it was evaluated with it; the batch dimension
  is symbolic, so any batch size runs. model_calibrated.stablehlo: the same with the logits
  divided by the fitted temperature, when the run fitted one.
- variables.npz: the weights and batch-norm statistics the run's test evaluated, one array per
  name in model.json's "variables" list, passed to the function as its first argument.
- model.json: class names, input shape and dtype, the preprocessing (config.data's decoding
  settings, the ops and the statistics fitted on the training split), temperature, operating
  threshold, versions, and how to call it (`medjax.inference.exported.load`).

The weights are an argument rather than constants baked into the program: the program stays a
few hundred kB whatever the model's size (serialized modules are limited to 2 GB, and XLA folds
large constants slowly when compiling), and the weights stay readable with numpy alone.
"""

import argparse
import dataclasses
import json
import os
import shutil
import tempfile

import flax
import jax
import jax.numpy as jnp
import numpy as np

import medjax
from medjax.cli import main_guard
from medjax.errors import ConfigError
from medjax.inference import load_run
from medjax.inference.exported import FORMAT, MANIFEST
from medjax.models import build_model
from medjax.predict import operating_threshold, umask

PLATFORMS = ("cpu", "cuda")
DECODING = (
    "source",
    "image_size",
    "channels",
    "depth",
    "slice_axis",
    "fit",
    "bit_depth",
    "dicom_window",
)


def flat_variables(variables) -> tuple[list[str], list[np.ndarray], object]:
    """Names ("params/stage1/conv0/kernel"), arrays and the tree structure to rebuild them."""
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(variables)
    names = ["/".join(str(k.key) for k in path) for path, _ in with_paths]
    return names, [np.asarray(leaf) for _, leaf in with_paths], treedef


def export_probs(run, probs_fn, treedef, leaves, platforms):
    """The serialized program (weights list, images) -> probabilities, any batch size."""

    def fn(weights, images):
        return probs_fn(jax.tree.unflatten(treedef, weights), images)

    (batch,) = jax.export.symbolic_shape("batch")
    specs = (
        [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in leaves],
        jax.ShapeDtypeStruct((batch, *run.image_shape), jnp.float32),
    )
    return jax.export.export(jax.jit(fn), platforms=platforms)(*specs).serialize()


def manifest(run, names, flip_tta: bool, platforms, calibrated: bool) -> dict:
    data = run.config.data
    return {
        "format": FORMAT,
        "files": {
            "model": "model.stablehlo",
            "calibrated": "model_calibrated.stablehlo" if calibrated else None,
            "variables": "variables.npz",
        },
        "variables": names,
        "class_names": run.class_names,
        "input": {
            "shape": ["batch", *run.image_shape],
            "dtype": "float32",
            "layout": "NDHWC" if len(run.image_shape) == 4 else "NHWC",
            "is": "images after the run's decoding and preprocessing (see preprocessing)",
        },
        "output": "class probabilities (batch, classes), float32, in class_names order",
        "flip_tta": flip_tta,
        "preprocessing": {
            "decoding": {key: data[key] for key in DECODING},
            "ops": list(data.preprocess),
            "fitted_on_train": run.data_summary.get("fitted_on_train", {}),
        },
        "temperature": run.temperature,
        "threshold": operating_threshold(run),
        "positive_class": run.config.eval.positive_class if run.num_classes == 2 else None,
        "platforms": list(platforms),
        "versions": {
            "medjax": medjax.__version__,
            "jax": jax.__version__,
            "flax": flax.__version__,
            "calling_convention": jax.export.maximum_supported_calling_convention_version,
        },
        "run": {"workdir": os.path.abspath(run.workdir), "model": run.config.model.name},
        "call": (
            "from medjax.inference.exported import load; predict = load(DIR); "
            "probs = predict(images)  # or load(DIR, calibrated=True); README has a jax-only "
            "version"
        ),
    }


def portable(run):
    """The run with its convolutions as lax.conv: the same parameters and function, but no
    CPU-tuned GEMM path, whose batch chunking needs a concrete batch size (the export's is
    symbolic) and which other platforms do not want."""
    config = run.config.copy_and_resolve_references()
    config.model.conv = "xla"
    model = build_model(config.model, run.num_classes, run.image_shape[0])
    return dataclasses.replace(run, config=config, model=model)


def export_run(run, out_dir: str, flip_tta: bool | None = None, platforms=PLATFORMS) -> str:
    """Write the exported model into `out_dir` (which must not exist); returns `out_dir`."""
    if os.path.exists(out_dir):
        raise ConfigError(f"--out {out_dir} exists already; remove it or choose another folder")
    parent = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.isdir(parent):
        raise ConfigError(f"--out {out_dir}: the folder {parent} does not exist; create it first")
    if run.head is not None:
        raise ConfigError(
            f"{run.workdir}: its config.model.head={run.config.model.head!r} is fitted on the "
            f"network's features after training and saved apart from it (head/head.pkl), not "
            f"part of the JAX program export writes; export a run whose head is 'linear' or "
            f"'mlp', or apply head/head.pkl to the features medjax.predict computes"
        )
    tta = run.config.eval.flip_tta if flip_tta is None else flip_tta
    run = portable(run)
    names, leaves, treedef = flat_variables(run.variables)
    programs = {"model.stablehlo": run.probs_fn(tta)}
    if run.temperature is not None:
        programs["model_calibrated.stablehlo"] = run.probs_fn(tta, run.temperature)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        for name, probs_fn in programs.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(export_probs(run, probs_fn, treedef, leaves, platforms))
        np.savez(os.path.join(tmp, "variables.npz"), **dict(zip(names, leaves, strict=True)))
        info = manifest(run, names, tta, platforms, run.temperature is not None)
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump(info, f, indent=1)
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it private
        os.replace(tmp, out_dir)  # complete or absent, never half-written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def main(argv) -> None:
    p = argparse.ArgumentParser(description="Export a finished run's model as StableHLO.")
    p.add_argument("--workdir", required=True, help="the finished run's folder")
    p.add_argument("--out", required=True, help="folder to create")
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="include flip TTA (default: as the run was evaluated)",
    )
    p.add_argument(
        "--platforms", default=",".join(PLATFORMS), help="comma-separated: cpu, cuda, rocm, tpu"
    )
    args = p.parse_args(argv)
    platforms = tuple(s.strip() for s in args.platforms.split(",") if s.strip())
    unknown = sorted(set(platforms) - {"cpu", "cuda", "rocm", "tpu"})
    if unknown or not platforms:
        raise ConfigError(f"--platforms {args.platforms}: choose from cpu, cuda, rocm, tpu")
    out = export_run(load_run(args.workdir), args.out, args.tta, platforms)
    print(f"{out}: model.stablehlo, variables.npz, model.json ({', '.join(platforms)})")


if __name__ == "__main__":
    main_guard(main)
