"""Binary masks in pure JAX, for images (H, W) and volumes (D, H, W): Otsu's threshold, binary
erosion/dilation/opening/closing with a disk or ball, connected components by label
propagation, hole filling and bounding boxes. Shapes are static, so every function compiles
once and vmaps over a batch.

Conventions follow scipy.ndimage and scikit-image, which the tests compare against: outside
the array counts as background (scipy's border_value=0), components and holes are
face-connected (scipy's default structure), the foreground is `image > threshold`.
"""

import itertools

import jax
import jax.numpy as jnp


def otsu_threshold(values: jax.Array, nbins: int = 256) -> jax.Array:
    """Otsu's threshold of `values` (any shape), as skimage.filters.threshold_otsu computes it
    for float images: a `nbins`-bin histogram over the value range; the bin centre that
    maximises the between-class variance."""
    x = values.astype(jnp.float32).ravel()
    lo, hi = x.min(), x.max()
    width = jnp.maximum(hi - lo, 1e-12) / nbins
    # numpy's histogram: half-open bins, the last one closed
    idx = jnp.clip(jnp.floor((x - lo) / width).astype(jnp.int32), 0, nbins - 1)
    counts = jnp.zeros(nbins, jnp.float32).at[idx].add(1.0)
    centres = lo + (jnp.arange(nbins, dtype=jnp.float32) + 0.5) * width
    w1 = jnp.cumsum(counts)
    w2 = jnp.cumsum(counts[::-1])[::-1]
    m1 = jnp.cumsum(counts * centres) / jnp.maximum(w1, 1)
    m2 = (jnp.cumsum((counts * centres)[::-1]) / jnp.maximum(w2[::-1], 1))[::-1]
    between = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
    # a constant image has no split: skimage returns its value
    return jnp.where(hi > lo, centres[jnp.argmax(between)], lo)


def ball_offsets(radius: int, ndim: int) -> list[tuple[int, ...]]:
    """The offsets of a disk (2D) or ball (3D) of `radius`: |offset|^2 <= radius^2, as
    skimage.morphology.disk and ball."""
    r = range(-radius, radius + 1)
    return [o for o in itertools.product(r, repeat=ndim) if sum(i * i for i in o) <= radius**2]


def face_offsets(ndim: int) -> list[tuple[int, ...]]:
    """The centre and its face neighbours (scipy's generate_binary_structure(ndim, 1))."""
    out = [(0,) * ndim]
    for axis in range(ndim):
        for step in (-1, 1):
            out.append(tuple(step if a == axis else 0 for a in range(ndim)))
    return out


def _shifted(x: jax.Array, offset, fill) -> jax.Array:
    """x[p + offset] at every p, `fill` where p + offset is outside."""
    pad = [(max(-o, 0), max(o, 0)) for o in offset]
    padded = jnp.pad(x, pad, constant_values=fill)
    starts = [max(o, 0) for o in offset]
    return jax.lax.slice(padded, starts, [s + n for s, n in zip(starts, x.shape, strict=True)])


def dilate(mask: jax.Array, offsets) -> jax.Array:
    out = jnp.zeros_like(mask)
    for o in offsets:  # symmetric structuring elements, so no reflection is needed
        out = out | _shifted(mask, o, False)
    return out


def erode(mask: jax.Array, offsets) -> jax.Array:
    out = jnp.ones_like(mask)
    for o in offsets:
        out = out & _shifted(mask, o, False)
    return out


def opening(mask: jax.Array, radius: int) -> jax.Array:
    """Erosion then dilation with a disk/ball: removes specks and thin bridges narrower than
    the element (scipy.ndimage.binary_opening)."""
    if radius <= 0:
        return mask
    offsets = ball_offsets(radius, mask.ndim)
    return dilate(erode(mask, offsets), offsets)


def closing(mask: jax.Array, radius: int) -> jax.Array:
    """Dilation then erosion with a disk/ball (scipy.ndimage.binary_closing, whose border
    counts as background, so foreground touching the border can shrink there)."""
    if radius <= 0:
        return mask
    offsets = ball_offsets(radius, mask.ndim)
    return erode(dilate(mask, offsets), offsets)


def _propagate(values: jax.Array, allowed: jax.Array) -> jax.Array:
    """Spread the maximum of `values` over face-connected `allowed` regions until nothing
    changes (one step per pixel of the longest path inside a region)."""
    offsets = face_offsets(values.ndim)[1:]

    def step(v):
        out = v
        for o in offsets:
            out = jnp.maximum(out, _shifted(v, o, 0))
        return jnp.where(allowed, out, 0)

    def body(carry):
        v, _ = carry
        new = step(v)
        return new, jnp.any(new != v)

    return jax.lax.while_loop(lambda c: c[1], body, (values, jnp.array(True)))[0]


def component_labels(mask: jax.Array) -> jax.Array:
    """Each face-connected component of `mask` labelled with the largest flat index (+1) of
    its pixels, 0 for background: the same partition as scipy.ndimage.label, other numbers."""
    ids = jnp.arange(1, mask.size + 1, dtype=jnp.int32).reshape(mask.shape)
    return _propagate(jnp.where(mask, ids, 0), mask)


def largest_component(mask: jax.Array) -> jax.Array:
    """The largest face-connected component of `mask` (all false when `mask` is); between
    equal sizes, the one whose last pixel in flat order comes last."""
    labels = component_labels(mask).ravel()
    sizes = jnp.zeros(mask.size + 1, jnp.int32).at[labels].add(1).at[0].set(0)
    # ties: prefer the larger label, so the choice does not depend on the scatter order
    best = jnp.argmax(sizes * (mask.size + 1) + jnp.arange(mask.size + 1))
    return (labels == best).reshape(mask.shape) & mask


def fill_holes(mask: jax.Array) -> jax.Array:
    """`mask` with every background region that does not reach the border set true
    (scipy.ndimage.binary_fill_holes)."""
    background = ~mask
    border = jnp.zeros(mask.shape, bool)
    for axis in range(mask.ndim):
        idx = [slice(None)] * mask.ndim
        for end in (0, -1):
            idx[axis] = end
            border = border.at[tuple(idx)].set(True)
    outside = _propagate((border & background).astype(jnp.int32), background) > 0
    return ~outside


def bounding_box(mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(lo, hi) per axis, in pixel-edge coordinates (the box holds pixels lo..hi-1); the
    whole array when `mask` is empty."""
    lo, hi = [], []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        present = jnp.any(mask, axis=other) if other else mask
        n = mask.shape[axis]
        pos = jnp.arange(n)
        any_ = jnp.any(present)
        lo.append(jnp.where(any_, jnp.min(jnp.where(present, pos, n)), 0))
        hi.append(jnp.where(any_, jnp.max(jnp.where(present, pos, -1)) + 1, n))
    return jnp.stack(lo).astype(jnp.float32), jnp.stack(hi).astype(jnp.float32)
