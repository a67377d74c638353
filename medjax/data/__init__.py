"""Data sources behind one interface, host preprocessing, and Grain input pipelines."""

from medjax.data import (  # noqa: F401  (registers the sources)
    dicom,
    generative,
    image_folder,
    manifest,
    medmnist,
    nifti,
    phantom,
    phantom_volume,
    tfds_source,
)
from medjax.data.loading import load_dataset
from medjax.data.source import SOURCES, Dataset, Split

__all__ = ["SOURCES", "Dataset", "Split", "load_dataset"]
