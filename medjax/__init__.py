"""medjax: medical image classification research in JAX, one config file per experiment."""

__version__ = "0.1.0"
