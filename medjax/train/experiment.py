"""Everything a run needs, built from its config: data, model, optimizer and loss, mesh and
compiled steps.

`build_experiment` is the one way medjax turns configs into a training program. `medjax.run`,
the sweep, `medjax.bench` and `medjax.preview` all use it, so a benchmark times exactly the
program a run trains with, and a preview shows exactly the augmentation it draws. It checks
every config error it can before anything is written; it reads data (through the data cache)
unless it is given data, and compiles nothing until a step is first called.
"""

import dataclasses
import math
import os

import jax
import numpy as np

from medjax.data import cache as data_cache
from medjax.data import imbalance, load_dataset
from medjax.data.pipeline import preprocess_dataset
from medjax.data.source import SPLITS, Dataset, Split
from medjax.models import build_model
from medjax.ops import build_augment, build_mix, build_preprocess
from medjax.ops.per_class import build_labelled_augment
from medjax.train import finetune, losses, precise_bn, sharding, validate, vectorize
from medjax.train.optimizers import build_optimizer
from medjax.train.steps import init_state, jit_steps


@dataclasses.dataclass(frozen=True)
class Data:
    dataset: Dataset  # preprocessed splits
    train: Split  # the training split, with over-sampling's synthetic images when asked for
    summary: dict  # what data_summary.json records


@dataclasses.dataclass(frozen=True)
class Schedule:
    steps_per_epoch: float  # real training images per epoch / batch size
    total_steps: int
    eval_every: int


@dataclasses.dataclass(frozen=True)
class Experiment:
    """K runs' shared program (K = 1 for a run alone): the runs differ only in the keys of
    config.vectorize, and their states are stacked on a leading axis when K > 1."""

    configs: tuple
    data: Data
    schedule: Schedule
    model: object
    mesh: object
    augment_fn: object
    mix_fn: object
    train_step: object  # jitted: (state, images, labels) -> (state, metrics)
    eval_step: object  # jitted: (state, images) -> class probabilities
    init_state: object  # () -> the runs' initial state, pretrained weights loaded
    lr_schedules: tuple  # each run's learning rate by step, for its log
    precise_bn: object  # state -> state with precise BN statistics (medjax.train.precise_bn)
    state_sharding: object  # the train state's NamedSharding per leaf (medjax.train.sharding)

    @property
    def config(self):
        return self.configs[0]

    @property
    def vectorized(self) -> bool:
        return len(self.configs) > 1

    def for_evaluation(self, state):
        """The state as validation and testing evaluate it: with precise BN statistics when
        the config asks for them."""
        return self.precise_bn(state) if self.precise_bn else state

    def batch_shardings(self):
        """(train batch sharding, eval batch sharding)."""
        plain = sharding.data_sharding(self.mesh)
        return (sharding.stacked_data_sharding(self.mesh) if self.vectorized else plain), plain

    def compile_train_step(self, state):
        """The train step compiled for `state` and the configured batch, without data."""
        lead = (len(self.configs),) if self.vectorized else ()
        batch = (*lead, self.config.train.batch_size)
        train_sharding = self.batch_shardings()[0]
        images = jax.ShapeDtypeStruct(
            (*batch, *self.data.dataset.image_shape), np.float32, sharding=train_sharding
        )
        findings = self.data.dataset.splits["train"].labels.shape[1:]  # multi-label: (L,)
        labels = jax.ShapeDtypeStruct((*batch, *findings), np.int32, sharding=train_sharding)
        return self.train_step.lower(state, images, labels).compile()


def pipeline_fns(config):
    """(preprocess, augment or None, mix or None), parsed before any data is read so that a
    bad op fails first."""
    augment = build_augment(config.data.augment) if config.data.augment else None
    return build_preprocess(config.data.preprocess), augment, build_mix(config.data.mix)


def load_data(config, preprocess) -> Data:
    """The configured data, preprocessed (from the data cache when it has them), with the
    training split over-sampled when config.data.oversample asks."""
    dataset, summary, fitted = load_preprocessed(config, preprocess)
    return with_oversampling(dataset, config, summary, fitted)


def load_preprocessed(config, preprocess):
    """(dataset, its summary, the statistics fitted on train): the configured data
    preprocessed, from the data cache when it has them."""

    def build():  # skipped when the cache has the result
        raw = load_dataset(config.data)
        dataset, fitted = preprocess_dataset(raw, preprocess, config.data.range_check)
        return dataset, raw.summary(), fitted

    dataset, summary, fitted = data_cache.load_or_build(config.data, build)
    print(
        f"data: {dataset.origin}: "
        + ", ".join(
            f"{n} {s['images']} {s['class_counts']}" for n, s in summary.items() if n in SPLITS
        )
        + f" ({summary.get('split_method', 'official')})"
    )
    return dataset, summary, fitted


def with_oversampling(dataset: Dataset, config, summary: dict, fitted: dict) -> Data:
    # before over-sampling: SMOTE and the GAN draw by class, which multi-label data lacks
    validate.check_task(config, dataset.num_classes, dataset.multi_label)
    real = dataset.splits["train"]
    # a generator's trained result is kept beside the data cache, so a resume reuses it
    store = os.path.join(data_cache.cache_root(config.data), "oversample")
    train, made, info = imbalance.oversample_recorded(
        real, config.data.oversample, config.seed, store if config.data.cache else None
    )
    record = {
        "origin": dataset.origin,
        "class_names": dataset.class_names,
        **summary,
        "preprocess": list(config.data.preprocess),
        "fitted_on_train": fitted,
    }
    if made:
        names = dataset.class_names
        made = {names[c]: n for c, n in made.items()}
        record["oversample"] = {
            "method": config.data.oversample,
            "synthetic_train_images": made,
            "synthetic_from_index": len(real),  # training examples from here on are synthetic
            **info,
        }
        if "quality" in info:
            record["oversample"]["quality"] = {names[c]: q for c, q in info["quality"].items()}
        print(f"{config.data.oversample}: {made} synthetic training images, train only")
        for name, q in record["oversample"].get("quality", {}).items():
            if q["c2st_accuracy"] is not None:
                print(
                    f"  {name}: real vs synthetic C2ST accuracy {q['c2st_accuracy']:.3f}, "
                    f"1-NN {q['nn1_accuracy']:.3f} (0.5 = indistinguishable)"
                )
    return Data(dataset, train, record)


def synthetic_data(image_shape, num_classes: int, num_examples: int, seed: int = 0) -> Data:
    """Random images and labels of the given shape in every split: for timing the program,
    not for results."""
    rng = np.random.default_rng(seed)
    split = Split(
        rng.normal(size=(num_examples, *image_shape)).astype(np.float32),
        rng.permutation(np.arange(num_examples) % num_classes).astype(np.int32),
    )
    names = [f"class{c}" for c in range(num_classes)]
    dataset = Dataset("synthetic", {s: split for s in SPLITS}, num_classes, names)
    return Data(dataset, split, {"origin": "synthetic"})


def make_schedule(config, num_train: int) -> Schedule:
    # An epoch counts real training images only (see medjax.data.imbalance).
    steps_per_epoch = num_train / config.train.batch_size
    total = config.train.num_steps or math.ceil(config.train.num_epochs * steps_per_epoch)
    eval_every = max(1, round(config.train.eval_every_epochs * steps_per_epoch))
    return Schedule(steps_per_epoch, total, eval_every)


def build_experiment(configs, data: Data | None = None) -> Experiment:
    """The program of the runs `configs` (one, or K to train stacked), on `data` or the
    configured data."""
    configs = tuple(configs)
    for c in configs:
        validate.validate(c)
    vectorize.check(configs)
    config = configs[0]  # everything but the vectorized keys is shared
    preprocess, _, mix = pipeline_fns(config)
    mesh = sharding.make_mesh(config.mesh)
    validate.check_devices(config, mesh)
    data = data or load_data(config, preprocess)
    dataset = data.dataset
    validate.check_data(
        config, dataset.class_names, len(dataset.splits["train"]), dataset.multi_label
    )
    # (key, image, label): the per-class ops need the data's class names
    augment = build_labelled_augment(
        config.data.augment,
        config.data.augment_per_class,
        dataset.class_names,
        config.data.augment_per_class_mode,
        dataset.multi_label,
    )
    schedule = make_schedule(config, len(dataset.splits["train"]))
    model = build_model(config.model, dataset.num_classes, dataset.image_shape[0])
    weights = losses.class_weights(
        config.loss.class_weights,
        data.train.labels,
        dataset.num_classes,
        config.loss.effective_beta,
    )

    def make_tx(hparams=None):
        def optimizer(lr=0.0):  # lr: the head's own rate in fine-tuning
            return build_optimizer(
                config.optimizer, schedule.total_steps, schedule.steps_per_epoch, lr, hparams
            )[0]

        shapes = lambda: finetune.param_shapes(model, dataset.image_shape)
        return finetune.with_finetuning(optimizer(), config, shapes, optimizer)

    hparams = [vectorize.hparams(c) for c in configs]

    def per_run(hp):  # the optimizer and loss of the run whose state holds `hp`
        return make_tx(hp), losses.build_loss(config.loss, weights, hp)

    tx = make_tx()

    def init(seed, hp):
        ema = config.train.ema_decay > 0
        return init_state(model, make_tx(hp), dataset.image_shape, seed, ema, hparams=hp)

    seeds = np.array([c.seed for c in configs], np.int32)
    stacked = {k: np.array([h[k] for h in hparams], np.float32) for k in hparams[0]}
    if len(configs) > 1:
        make_state = lambda: jax.vmap(init)(seeds, stacked)
    else:
        make_state = lambda: init(config.seed, hparams[0])
    state_sharding = sharding.state_shardings(
        jax.eval_shape(make_state), mesh, config.sharding, lead=int(len(configs) > 1)
    )
    train_step, eval_step = jit_steps(
        model,
        tx,
        losses.build_loss(config.loss, weights),
        augment,
        mesh,
        ema_decay=config.train.ema_decay,
        flip_tta=config.eval.flip_tta,
        mix_fn=mix,
        freeze=tuple(config.model.freeze),
        members=len(configs) if len(configs) > 1 else 0,
        per_run=per_run if hparams[0] else None,
        state_sharding=state_sharding,
        accumulate=config.train.grad_accum_steps,
        multi_label=dataset.multi_label,
    )

    def initial_state():
        state = jax.jit(make_state, out_shardings=state_sharding)()
        if config.model.pretrained or any(config.model.member_pretrained):
            state = finetune.load_into_state(state, config, tx, state_sharding)
        return state

    lr_schedules = tuple(
        build_optimizer(c.optimizer, schedule.total_steps, schedule.steps_per_epoch)[1]
        for c in configs
    )
    precise = None
    if precise_bn.wanted(config) and _has_batch_norm(model, dataset.image_shape):
        precise = precise_bn.PreciseBN(
            model, configs, dataset.splits["train"], mesh, state_sharding
        )
    return Experiment(
        configs,
        data,
        schedule,
        model,
        mesh,
        augment,
        mix,
        train_step,
        eval_step,
        initial_state,
        lr_schedules,
        precise,
        state_sharding,
    )


def _has_batch_norm(model, image_shape) -> bool:
    x = jax.ShapeDtypeStruct((1, *image_shape), np.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    return bool(jax.tree.leaves(variables.get("batch_stats", {})))
