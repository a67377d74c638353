"""See what the configured preprocessing and augmentation do before training on it.

python -m medjax.preview --config experiments/NAME.py[:args] --out grid.png [--examples 6]
    [--draws 5] [--with-mix] [--config.KEY=VALUE]

One row per training example: the original, the preprocessed image, then `--draws` augmented
versions, each
drawn with the key the train step would use; volumes show their middle slice. The title lists the
op chains, so a saved grid documents the pipeline.
"""

import textwrap

from medjax.cli import (
    at_least,
    base_parser,
    config_from_args,
    main_guard,
    output_file,
    split_overrides,
)


def augmented_grid(config, examples: int, draws: int, with_mix: bool = False):
    """(originals, preprocessed and augmented images (examples, 1 + draws, H, W, C), labels,
    class names), everything on the host. Draw d is the train step's own augmentation (from
    the same experiment builder) with the keys step d gives the first positions of its batch."""
    import jax
    import numpy as np

    from medjax.data import load_dataset
    from medjax.data.pipeline import preprocess_dataset
    from medjax.train.experiment import build_experiment, pipeline_fns, with_oversampling
    from medjax.train.steps import example_keys, seed_keys, step_keys

    raw = load_dataset(config.data)
    train = raw.splits["train"]
    # Evenly spaced examples, so every class tends to show up.
    pick = np.linspace(0, len(train) - 1, examples).astype(int)
    dataset, fitted = preprocess_dataset(raw, pipeline_fns(config)[0], config.data.range_check)
    exp = build_experiment([config], with_oversampling(dataset, config, raw.summary(), fitted))
    images = dataset.splits["train"].images[pick]
    state_key = seed_keys(config.seed)[1]
    rows = [images]
    for step in range(draws):
        if exp.augment_fn is None:
            rows.append(images)
            continue
        augment_key, _, mix_key = step_keys(state_key, step)
        keys = example_keys(augment_key, examples)
        out = jax.jit(jax.vmap(exp.augment_fn))(keys, images, train.labels[pick])
        if with_mix and exp.mix_fn is not None:
            onehot = jax.nn.one_hot(train.labels[pick], dataset.num_classes)
            out, _ = exp.mix_fn(mix_key, out, onehot)
        rows.append(np.asarray(out))
    return train.images[pick], np.stack(rows, 1), train.labels[pick], dataset.class_names


def _displayable(image):
    if image.ndim == 4:  # volume: the middle slice along depth
        image = image[image.shape[0] // 2]
    return image[..., 0] if image.shape[-1] == 1 else image


def save_grid(originals, grid, labels, class_names, title: str, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows, cols = grid.shape[0], grid.shape[1] + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.9), squeeze=False)
    for r in range(rows):
        # The original on its own scale; the rest on one shared scale per row, so that
        # augmentation's intensity changes stay visible.
        lo, hi = np.percentile(grid[r], [0.5, 99.5])
        for c in range(cols):
            ax = axes[r, c]
            if c == 0:
                img = _displayable(originals[r]).astype(np.float32)
                img = (img - img.min()) / max(img.max() - img.min(), 1e-12)
            else:
                img = (_displayable(grid[r, c - 1]) - lo) / max(hi - lo, 1e-12)
            ax.imshow(np.clip(img, 0, 1), cmap=None if img.ndim == 3 else "gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                names = ["original", "preprocessed"] + [f"augmented {i}" for i in range(1, cols)]
                ax.set_title(names[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(class_names[labels[r]], fontsize=8)
    fig.suptitle(title, fontsize=7, wrap=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _image_types() -> set[str]:
    from matplotlib.figure import Figure

    return set(Figure().canvas.get_supported_filetypes())


def main(argv):
    rest, overrides = split_overrides(argv)
    parser = base_parser(__doc__)
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--examples", type=at_least(1), default=6, help="rows: training examples")
    parser.add_argument(
        "--draws", type=at_least(0), default=5, help="augmented versions per example"
    )
    parser.add_argument(
        "--with-mix",
        action="store_true",
        help="also apply config.data.mix (MixUp/CutMix blend each row with another example)",
    )
    args = parser.parse_args(rest)
    output_file(args.out, _image_types())
    config = config_from_args(args, overrides)
    originals, grid, labels, names = augmented_grid(
        config, args.examples, args.draws, args.with_mix
    )
    per_class = list(config.data.augment_per_class)
    title = "\n".join(
        textwrap.wrap(f"preprocess: {' -> '.join(config.data.preprocess)}", 140)
        + textwrap.wrap(f"augment: {' -> '.join(config.data.augment) or '(none)'}", 140)
        + (per_class and textwrap.wrap(f"per class: {'; '.join(per_class)}", 140))
        + ([f"mix: {config.data.mix}"] if config.data.mix and args.with_mix else [])
    )
    save_grid(originals, grid, labels, names, title, args.out)
    print(f"wrote {args.out}: {args.examples} examples x (1 + {args.draws} augmented draws)")


if __name__ == "__main__":
    main_guard(main)
