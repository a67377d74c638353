"""Shared map operations: channel reductions, min-max normalisation, resizing to the input."""

import jax
import jax.numpy as jnp


def spatial_axes(x) -> tuple:
    """The spatial axes of a batch of channel-last maps (B, *spatial, C)."""
    return tuple(range(1, x.ndim - 1))


def normalise(maps, eps: float = 1e-7):
    """Each map shifted to min 0 and divided by (eps + its max), as pytorch-grad-cam's
    scale_cam_image does."""
    axes = tuple(range(1, maps.ndim))
    maps = maps - maps.min(axis=axes, keepdims=True)
    return maps / (eps + maps.max(axis=axes, keepdims=True))


def resize(maps, spatial: tuple):
    """(B, *small) -> (B, *spatial), (bi/tri)linear with half-pixel centres and edge values
    repeated: cv2.resize's INTER_LINEAR for 2D maps (what pytorch-grad-cam uses)."""
    if tuple(maps.shape[1:]) == tuple(spatial):
        return maps
    # Upsampling: antialiasing changes nothing, and the triangle kernel's weights renormalised
    # at the border equal cv2's edge replication.
    return jax.image.resize(maps, (maps.shape[0], *spatial), "linear", antialias=False)


def max_abs_channel(grads):
    """A gradient's saliency map: the largest |value| over channels (Simonyan et al.)."""
    return jnp.abs(grads).max(axis=-1)
