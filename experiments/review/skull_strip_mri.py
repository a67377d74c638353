"""Skull stripping / foreground crop before classification, as the MRI studies of the scoping
review did (brain extraction, then the classifier sees the brain only).

Question: does keeping only the organ (Otsu threshold, opening, largest component, holes
filled; medjax.ops.roi.skull_strip) and cropping to it change what the plain review CNN reaches
on MRI, against the same recipe without it (`:strip=false`)?
Design: preprocessing-then-CNN ("skull stripping + CNN" pipelines of the review's MRI studies);
the same network, budget and seeds as experiments/review/plain_cnn.py.
Data: the generated MRI phantom (Rician noise; an organ on a dark background, lesion present
or not), 2D 28 px; `:volume` uses the `phantom3d` source (16 x 28 x 28 volumes) and the 3D CNN.
The `:data` argument of the shared recipe is not used: this design needs MRI.
Command:
    python -m medjax.run --config experiments/review/skull_strip_mri.py:seed=0 --workdir runs/review/strip0
    python -m medjax.run --config experiments/review/skull_strip_mri.py:strip=false,seed=0 --workdir runs/review/nostrip0
    python -m medjax.run --config experiments/review/skull_strip_mri.py:volume,runlocal --workdir /tmp/x
Result: a working pipeline on generated data only (no real MRI in this repository); see the
README's "The review's designs".
"""

from medjax.configs.review import review_config
from medjax.errors import ConfigError

STRIP = "skull_strip(threshold='otsu', radius=1, fill_holes=True, crop=True, margin=0.05)"


def get_config(arg=None):
    c, a = review_config(arg, strip=True, volume=False)
    if a.data not in ("breastmnist", "phantom"):  # breastmnist: the recipe's default
        raise ConfigError(
            f"skull_strip_mri.py runs on the MRI phantom only, not data={a.data!r}; drop :data"
        )
    c.data.source = "phantom3d" if a.volume else "phantom"
    c.data.name = c.data.source
    c.data.modality = "mri"
    c.eval.positive_class = 1  # lesion present
    # Stripping runs on the raw 0-255 images, before the values are mapped to [-1, 1].
    c.data.preprocess = (STRIP,) * a.strip + ("value_range(min=-1.0, max=1.0)",)
    if a.volume:
        c.data.depth = 16
        c.model.name = "cnn3d"
        c.data.augment = ()  # the 2D recipe's rotation; volumes train unaugmented here
        if a.runlocal:
            c.data.depth, c.data.image_size = 8, 16
            c.model.widths = (4, 8)
    return c.lock()
