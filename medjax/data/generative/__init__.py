"""Generative models that make synthetic training images: a class-conditional GAN for
over-sampling minority classes (`config.data.oversample="gan(...)"`) and the two-sample tests
that measure how real its images look."""

from medjax.data.generative import oversample  # noqa: F401  (registers "gan")
