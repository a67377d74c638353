"""Pretrained weights from files the user already has (nothing is downloaded).

`load_pretrained(path, model_name, like, source)` reads a torchvision `torch.save` state dict
without torch (see torch_file.py), or with source="keras" a keras.applications model's `.keras`
/ `.h5` file with h5py alone (keras_file.py, keras_apps.py), and returns `like`'s variables
filled from it, with notes on what was adapted (a re-initialised head, a summed grayscale stem).
Files are untrusted input: no pickled code runs, and a file cannot make the import allocate
more than its content backs or the model takes (bounded.py).
"""

from medjax.weights.keras_apps import MODELS as KERAS_MODELS
from medjax.weights.keras_file import read_keras_file
from medjax.weights.load import load_pretrained
from medjax.weights.torch_file import find_state_dict, read_torch_file
from medjax.weights.torchvision import MODELS as SUPPORTED_MODELS

__all__ = [
    "KERAS_MODELS",
    "SUPPORTED_MODELS",
    "find_state_dict",
    "load_pretrained",
    "read_keras_file",
    "read_torch_file",
]
