"""A finished run, loaded for use: `load_run(workdir)`.

Everything after training (explaining, external evaluation, prediction, export, the report)
starts here, from the run's own files: config.json, data_summary.json (class names and the
preprocessing statistics fitted on its training split), results.json and the variables its test
evaluated (medjax.inference.files). No training data is read.
"""

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from medjax.configs import config_from_plain
from medjax.data.pipeline import eval_batches
from medjax.data.source import Split
from medjax.errors import ConfigError, WorkdirError
from medjax.eval.calibration import EPS as CLIP
from medjax.heads import files as heads_files
from medjax.heads import registry as heads
from medjax.heads.features import pooled_of
from medjax.heads.in_run import probabilities
from medjax.inference import files
from medjax.models import build_model
from medjax.ops import build_preprocess
from medjax.train.losses import MULTI_LABEL_LOSSES


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    workdir: str
    config: object  # the run's locked ConfigDict
    model: object  # the Flax module, as trained
    variables: dict  # {"params", "batch_stats"} as the test evaluated them
    class_names: list
    image_shape: tuple  # one preprocessed input: (H, W, C) or (D, H, W, C)
    preprocess: object  # raw image -> model input, with the training split's statistics bound
    results: dict  # results.json
    data_summary: dict  # data_summary.json
    # The head fitted on the network's features (config.model.head, medjax.heads), else None:
    # predict applies it; logits_fn and probs_fn are the network's own.
    head: object = None
    # jitted functions by their options: each compiled once per run, not once per call
    _jitted: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def temperature(self) -> float | None:
        """The calibration temperature fitted on validation, when the run fitted one."""
        return (self.results.get("calibration") or {}).get("temperature")

    def logits_fn(self):
        """Pure (variables, images) -> logits in float32, for jit, grad and export."""
        model = self.model

        def logits(variables, images):
            return model.apply(variables, images, train=False).astype(jnp.float32)

        return logits

    @property
    def multi_label(self) -> bool:
        """Whether the run predicts several findings per image (one sigmoid each)."""
        return self.config.loss.name in MULTI_LABEL_LOSSES

    def probs_fn(self, flip_tta: bool | None = None, temperature: float | None = None):
        """Pure (variables, images) -> class probabilities as the run's test computed them
        (flip TTA when its config used it); with `temperature`, calibrated as it was fitted:
        softmax(log p / T) of those probabilities (medjax.eval.calibration)."""
        logits = self.logits_fn()
        tta = self.config.eval.flip_tta if flip_tta is None else flip_tta
        # multi-label runs: each finding's own sigmoid (they have no temperature)
        link = jax.nn.sigmoid if self.multi_label else functools.partial(jax.nn.softmax, axis=-1)

        def probs(variables, images):
            p = link(logits(variables, images))
            if tta:
                p = (p + link(logits(variables, jnp.flip(images, -2)))) / 2
            if temperature is not None:
                p = jax.nn.softmax(jnp.log(jnp.clip(p, CLIP, 1.0)) / temperature, axis=-1)
            return p

        return probs

    def predict(self, images: np.ndarray, flip_tta=None, temperature=None, batch_size=None):
        """Class probabilities (N, classes) of preprocessed `images`, in fixed-size batches
        (one compilation for any N); from the fitted head when the run has one."""
        if self.head is not None:
            return self._head_predict(images, flip_tta, temperature, batch_size)
        key = ("probs", flip_tta, temperature)
        if key not in self._jitted:
            self._jitted[key] = jax.jit(self.probs_fn(flip_tta, temperature))
        fn = self._jitted[key]
        batch_size = batch_size or self.config.eval.batch_size
        split = Split(np.asarray(images, np.float32), np.zeros(len(images), np.int32))
        out = [
            np.asarray(fn(self.variables, x))[mask]
            for x, _, mask in eval_batches(split, batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)

    def features(self, images: np.ndarray, batch_size=None) -> np.ndarray:
        """The network's "pooled" features (N, F) of preprocessed `images`, as a fitted head
        takes them (medjax.heads.features)."""
        if "features" not in self._jitted:
            model = self.model
            self._jitted["features"] = jax.jit(lambda v, x: pooled_of(model, v, x))
        fn, batch_size = self._jitted["features"], batch_size or self.config.eval.batch_size
        split = Split(np.asarray(images, np.float32), np.zeros(len(images), np.int32))
        out = [
            np.asarray(fn(self.variables, x))[mask]
            for x, _, mask in eval_batches(split, batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def _head_predict(self, images, flip_tta, temperature, batch_size) -> np.ndarray:
        if flip_tta:
            raise ConfigError(
                f"{self.workdir}: its {self.config.model.head!r} head was fitted on the "
                f"features of unflipped images; flip TTA applies to the network's own head only"
            )
        if not len(images):
            return np.zeros((0, self.num_classes), np.float32)
        p = probabilities(self.head, self.features(images, batch_size), self.num_classes)
        if temperature is not None:
            p = np.asarray(jax.nn.softmax(jnp.log(jnp.clip(p, CLIP, 1.0)) / temperature, axis=-1))
        return p

    def preprocess_images(self, raw: np.ndarray) -> np.ndarray:
        """Raw images (N, ...) decoded as the run's source decodes them -> model inputs."""
        if "preprocess" not in self._jitted:
            self._jitted["preprocess"] = jax.jit(jax.vmap(self.preprocess))
        batched = self._jitted["preprocess"]
        return (
            np.concatenate([np.asarray(batched(raw[i : i + 256])) for i in range(0, len(raw), 256)])
            if len(raw)
            else np.zeros((0, *self.image_shape), np.float32)
        )


def _read_json(workdir: str, name: str) -> dict:
    path = os.path.join(workdir, name)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise WorkdirError(
            f"{workdir} has no finished run: {name} is missing. Train one with "
            f"`python -m medjax.run --config experiments/NAME.py --workdir {workdir}` (a run "
            f"that was stopped resumes with the same command)"
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise WorkdirError(f"{path} cannot be read ({e}); it is not a file medjax wrote") from None


def load_run(workdir: str) -> TrainedRun:
    """The finished run in `workdir`; one WorkdirError naming what is missing otherwise. A run
    finished by an older medjax, without inference files, is re-tested once to write them."""
    if not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir {workdir} does not exist; pass the folder a run trained in")
    results = _read_json(workdir, "results.json")
    config = config_from_plain(_read_json(workdir, "config.json"))
    _refuse_segment_prior(config, workdir)
    summary = _read_json(workdir, "data_summary.json")
    if not files.has_variables(workdir):
        _write_missing_variables(config, workdir)
    card = _read_json(workdir, "run_card.json")
    image_shape = tuple(card["data"]["image_shape"])
    class_names = list(summary["class_names"])
    model = build_model(config.model, len(class_names), image_shape[0])
    preprocess = build_preprocess(config.data.preprocess).bind(summary.get("fitted_on_train", {}))
    variables = files.read_variables(workdir)
    _check_fits(model, variables, image_shape, workdir)
    head = heads_files.load(workdir, config.model.head) if heads.is_fitted(config) else None
    return TrainedRun(
        workdir=workdir,
        config=config,
        model=model,
        variables=variables,
        class_names=class_names,
        image_shape=image_shape,
        preprocess=preprocess,
        results=results,
        data_summary=summary,
        head=head,
    )


def _shapes(tree) -> dict:
    return {
        jax.tree_util.keystr(path): tuple(np.shape(x))
        for path, x in jax.tree_util.tree_leaves_with_path(tree)
    }


def _check_fits(model, variables, image_shape, workdir: str) -> None:
    """One WorkdirError when the saved variables are not those of config.json's model (a
    config.json edited or copied from another run), instead of a shape error deep in Flax."""
    x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    expected = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    want = _shapes({k: expected[k] for k in ("params", "batch_stats") if k in expected})
    have = _shapes(variables)
    if want != have:
        wrong = sorted(set(want.items()) ^ set(have.items()))[:3]
        raise WorkdirError(
            f"{os.path.join(workdir, files.VARIABLES)} does not fit the model that "
            f"{os.path.join(workdir, 'config.json')} describes (first differences: "
            f"{', '.join(f'{k} {v}' for k, v in wrong)}); config.json was changed or comes "
            f"from another run: restore it, or point --workdir at the run that wrote it"
        )


def _write_missing_variables(config, workdir: str) -> None:
    from medjax.train.loop import train_and_evaluate

    print(
        f"{workdir} was finished by a medjax that kept no inference files: re-testing its best "
        f"checkpoint once to write them (its results are recomputed, not changed)"
    )
    train_and_evaluate(config, workdir)


def _refuse_segment_prior(config, workdir: str) -> None:
    """A classifier trained behind a segmentation prior saw cropped (or mask-channel) images;
    given plain ones it would answer without a word of warning, so it is not loaded."""
    prior = config.get("segment", {}).get("model", "")
    if prior:
        raise WorkdirError(
            f"{workdir} classifies images that its segmentation prior "
            f"(config.segment.model={prior!r}, use={config.segment.use!r}) rewrote first; "
            f"predict, explain, export and evaluate do not apply the segmenter yet, so they "
            f"would classify unprepared images. Use the run's results.json and predictions/, "
            f"or train without config.segment.model to use those tools"
        )
