"""Class probabilities of new images from a finished run, one CSV row per image.

    python -m medjax.predict --workdir runs/mri --input scans/ more.png list.csv --out preds.csv

Each file is decoded as the run's training data was (`medjax.inference.inputs`), preprocessed
with the statistics fitted on its training split, and classified with its evaluated weights,
with flip TTA when the run was evaluated with it (`--tta` / `--no-tta` to choose). Columns:
path, frame (the frame or slice within a multi-image file, else 0), predicted (class name),
prob_<class> for each class; calibrated_prob_<class> when the run fitted a temperature; and
predicted_at_threshold when its results hold an operating point (binary runs). The CSV is
written under a temporary name and renamed when complete: a refused file leaves nothing.
"""

import argparse
import csv
import os
import tempfile
import warnings

import jax
import numpy as np
from tqdm.auto import tqdm

from medjax.cli import at_least, main_guard
from medjax.data.decode import stack_consistent
from medjax.data.files import SkippedFileWarning
from medjax.data.values import nonfinite
from medjax.errors import ConfigError, DataError
from medjax.inference import inputs, load_run


def operating_threshold(run) -> float | None:
    """The decision threshold results.json records for a binary run, if any."""
    threshold = (run.results.get("operating_point") or {}).get("threshold")
    return None if threshold is None or run.num_classes != 2 else float(threshold)


def columns(run) -> list[str]:
    names = ["path", "frame", "predicted"] + [f"prob_{c}" for c in run.class_names]
    if run.temperature is not None:
        names += [f"calibrated_prob_{c}" for c in run.class_names]
    return names + (["predicted_at_threshold"] if operating_threshold(run) is not None else [])


class Predictor:
    """Preprocessing and probabilities, each compiled once, for fixed-size padded batches."""

    def __init__(self, run, flip_tta: bool | None, batch_size: int, cam=None):
        self.run, self.batch_size, self.cam = run, batch_size, cam
        self.preprocess = jax.jit(jax.vmap(run.preprocess))
        fns = [run.probs_fn(flip_tta)]
        if run.temperature is not None:
            fns.append(run.probs_fn(flip_tta, run.temperature))
        self.probs = jax.jit(lambda variables, x: [f(variables, x) for f in fns])

    def __call__(self, images: list[np.ndarray], names: list[str]) -> list[np.ndarray]:
        """[probabilities (N, classes)] and, with a temperature, the calibrated ones."""
        out = []
        for start in range(0, len(images), self.batch_size):
            block = stack_consistent(images[start : start + self.batch_size])
            n = len(block)
            pad = np.zeros((self.batch_size - n, *block.shape[1:]), block.dtype)
            x = self.preprocess(np.concatenate([block, pad]))
            found = nonfinite(np.asarray(x[:n]))
            if found:
                raise DataError(
                    f"{names[start + found[0]]}: preprocessing gives NaN or infinite values (the "
                    f"run's {list(self.run.config.data.preprocess)} on a constant or damaged "
                    f"image?); check the file or leave it out"
                )
            out.append([np.asarray(p)[:n] for p in self.probs(self.run.variables, x)])
            if self.cam is not None:
                self.cam(np.asarray(x[:n]), names[start : start + n], out[-1][0])
        return [np.concatenate(parts) for parts in zip(*out, strict=True)]


def predicted(run, p: np.ndarray) -> str:
    """The predicted class; for a multi-label run, the findings at or above their thresholds
    fitted on validation, joined by ';' (empty: none)."""
    thresholds = (run.results.get("operating_point") or {}).get("thresholds")
    if thresholds is None:
        return run.class_names[int(np.argmax(p))]
    return ";".join(n for n, v, t in zip(run.class_names, p, thresholds, strict=True) if v >= t)


def rows(run, decoded: inputs.Images, probs: list[np.ndarray]):
    threshold, positive = operating_threshold(run), run.config.eval.positive_class
    for i, (name, frame) in enumerate(zip(decoded.names, decoded.frames, strict=True)):
        p = probs[0][i]
        row = [name, frame, predicted(run, p)]
        row += [f"{float(v):.9g}" for q in probs for v in q[i]]  # .9g: float32 round-trips
        if threshold is not None:
            row.append(run.class_names[positive if p[positive] >= threshold else 1 - positive])
        yield row


def predict_files(
    run, entries, out_path: str, flip_tta=None, batch_size=None, on_error="raise", cam=None
):
    """Write the CSV for `entries` (`inputs.gather`); returns the number of images. `cam`:
    called with each batch of preprocessed images, their file names and probabilities."""
    cfg, read = inputs.decode_config(run, on_error), inputs.reader(run)
    predictor = Predictor(run, flip_tta, batch_size or run.config.eval.batch_size, cam)
    folder = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=".predict-", suffix=".csv", dir=folder)
    count, skipped = 0, 0
    try:
        with (
            os.fdopen(fd, "w", newline="") as f,
            tqdm(
                total=len(entries), unit="file", disable=len(entries) < 100, desc="predict"
            ) as bar,
        ):
            writer = csv.writer(f)
            writer.writerow(columns(run))
            for start in range(0, len(entries), predictor.batch_size):
                chunk = entries[start : start + predictor.batch_size]
                decoded, missed = inputs.decode(chunk, cfg, read)
                skipped += missed
                if decoded.images:
                    writer.writerows(rows(run, decoded, predictor(decoded.images, decoded.names)))
                count += len(decoded.images)
                bar.update(len(chunk))
        if not count:
            raise DataError(f"none of the {len(entries)} files could be read; nothing written")
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it private; a plain file is wanted
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if skipped:
        warnings.warn(
            f"skipped {skipped} of {len(entries)} files (--on-error skip; each is named in a "
            f"warning above); {out_path} has no row for them",
            SkippedFileWarning,
            stacklevel=2,
        )
    return count


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cam_hook(run, cam_dir: str):
    """--cam: Grad-CAM overlays of each image's predicted class into `cam_dir`, named by the
    image's row in the CSV (<row>_<predicted class>.png)."""
    from medjax.explain import explain_images, save_overlays

    done = [0]

    def save(images: np.ndarray, names: list[str], probs: np.ndarray) -> None:
        maps = explain_images(run, images, method="gradcam")
        first, done[0] = done[0], done[0] + len(images)
        save_overlays(
            cam_dir,
            images,
            maps,
            range(first, done[0]),
            None,  # new images: no known class
            probs,
            run.class_names,
            "gradcam",
        )

    return save


def _check_out(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not path.lower().endswith(".csv"):
        raise ConfigError(f"--out {path}: end the name with .csv")
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise ConfigError(f"--out {path}: the folder {folder} does not exist or is not writable")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="the finished run's folder")
    p.add_argument("--input", nargs="+", required=True, help="image files, folders or a .csv")
    p.add_argument("--out", required=True, help="the CSV to write")
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average with the left-right mirror (default: as the run was evaluated)",
    )
    p.add_argument("--batch-size", type=at_least(1), default=None, help="default: the run's")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    p.add_argument("--path-column", default=None, help="default: the run's config.data.path_column")
    p.add_argument("--cam", default=None, metavar="DIR", help="also save Grad-CAM overlays here")
    return p.parse_args(argv)


def main(argv) -> None:
    args = parse_args(argv)
    _check_out(args.out)
    run = load_run(args.workdir)
    cam = cam_hook(run, args.cam) if args.cam else None  # fails before any work if unavailable
    entries = inputs.gather(args.input, args.path_column or run.config.data.path_column)
    n = predict_files(run, entries, args.out, args.tta, args.batch_size, args.on_error, cam)
    print(f"{args.out}: {n} images from {len(entries)} files")


if __name__ == "__main__":
    main_guard(main)
