"""Explanations of a trained model's predictions: class-activation maps (Grad-CAM, Grad-CAM++,
guided Grad-CAM), gradients (saliency, SmoothGrad, integrated gradients, guided backprop) and
occlusion, selected by name from `EXPLAINERS`, plus overlays and galleries of them."""

from medjax.explain import cam, gradients, occlusion  # noqa: F401  (registers the methods)
from medjax.explain.batched import explain_images
from medjax.explain.model_fn import ModelFn, choose_stage, model_fn, spatial_stages
from medjax.explain.plots import gallery, save_overlays
from medjax.explain.registry import EXPLAINERS

__all__ = [
    "EXPLAINERS",
    "ModelFn",
    "choose_stage",
    "explain_images",
    "gallery",
    "model_fn",
    "save_overlays",
    "spatial_stages",
]
