"""Data sources behind one interface, host preprocessing, and Grain input pipelines."""

from medjax.data import medmnist, phantom, tfds_source  # noqa: F401  (registers the sources)
from medjax.data.source import SOURCES, Dataset, Split, load_dataset

__all__ = ["SOURCES", "Dataset", "Split", "load_dataset"]
