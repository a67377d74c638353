"""Depthwise 2-D convolution (one filter per channel) as k*k shifted multiply-adds on the CPU.

Why: XLA:CPU (jax 0.12) runs a grouped convolution with feature_group_count == channels
through a generic loop that is 10-100x slower per FLOP than its dense convolutions, and its
gradients (a batch-grouped convolution) slower still. The same arithmetic written as
elementwise products of the k*k shifted windows fuses into one vectorised loop:
  * forward and input gradient: one loop over the output, the taps summed in registers;
  * weight gradient: k*k reductions of (window * output gradient) over batch and space. These
    read their operands once per tap, so they walk the batch in small chunks that stay in
    cache (a whole batch at once is ~4x slower).
Products and sums are in float32 whatever the compute dtype. `impl="xla"` (and "auto" on GPUs
and TPUs) keeps lax.conv with feature_group_count, the vendors' fast path there.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from medjax.models.conv import F32, _batch_chunk, _sum_batch

_DW_CHUNK_ELEMS = 1 << 16  # input elements per weight-gradient chunk: cache-sized


def same_padding(size: int, k: int, s: int) -> tuple[int, int]:
    """lax's (and TensorFlow's) "SAME": the odd pixel goes after."""
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _windows(xp, k, s, ho, wo):
    """The k*k strided (ho, wo) windows of a padded NHWC array, row-major over the taps."""
    n, _, _, c = xp.shape
    return [
        lax.slice(
            xp, (0, i, j, 0), (n, i + (ho - 1) * s + 1, j + (wo - 1) * s + 1, c), (1, s, s, 1)
        )
        for i in range(k)
        for j in range(k)
    ]


def _fwd(x, w, s, pad, out_hw):
    k = w.shape[0]
    xp = jnp.pad(x.astype(F32), ((0, 0), pad[0], pad[1], (0, 0)))
    wt = w.astype(F32).reshape(k * k, -1)
    return sum(t * wt[i] for i, t in enumerate(_windows(xp, k, s, *out_hw)))


def _dx(g, w, s, pad, x_hw):
    """Correlation of the stride-dilated output gradient with the flipped kernel."""
    k = w.shape[0]
    (h, wd), (ho, wo) = x_hw, g.shape[1:3]
    cfg = [(0, 0, 0)]
    for size, out, (lo, _) in ((h, ho, pad[0]), (wd, wo, pad[1])):
        cfg.append((k - 1 - lo, size + lo - (out - 1) * s - 1, s - 1))
    gp = lax.pad(g.astype(F32), jnp.zeros((), F32), cfg + [(0, 0, 0)])
    wf = jnp.flip(w, (0, 1)).astype(F32).reshape(k * k, -1)
    return sum(t * wf[i] for i, t in enumerate(_windows(gp, k, 1, h, wd)))


def _dw(x, g, k, s, pad):
    def one(xc, gc):
        xp = jnp.pad(xc.astype(F32), ((0, 0), pad[0], pad[1], (0, 0)))
        gc = gc.astype(F32)
        taps = _windows(xp, k, s, *gc.shape[1:3])
        return jnp.stack([jnp.sum(t * gc, axis=(0, 1, 2)) for t in taps])

    n, h, wd, c = x.shape
    cb = _batch_chunk(n, h * wd * c, _DW_CHUNK_ELEMS)
    return _sum_batch(one, cb, x, g).reshape(k, k, 1, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise(x, w, stride, pad, dt):
    k = w.shape[0]
    ho = (x.shape[1] + sum(pad[0]) - k) // stride + 1
    wo = (x.shape[2] + sum(pad[1]) - k) // stride + 1
    return _fwd(x.astype(dt), w.astype(dt), stride, pad, (ho, wo)).astype(dt)


def _depthwise_fwd(x, w, stride, pad, dt):
    return _depthwise(x, w, stride, pad, dt), (x.astype(dt), w)


def _depthwise_bwd(stride, pad, dt, res, g):
    x, w = res
    dx = _dx(g, w.astype(dt), stride, pad, x.shape[1:3])
    dw = _dw(x, g, w.shape[0], stride, pad)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


def depthwise_conv2d(x, w, stride: int = 1, padding="SAME", compute_dtype=F32, impl="auto"):
    """NHWC x, (k, k, 1, C) w; padding "SAME" or an int (symmetric). Result in compute_dtype.

    impl: "gemm" (the shifted multiply-add form; the name is config.model.conv's), "xla"
    (lax.conv with feature_group_count) or "auto" (the first on CPU).
    """
    k, c = w.shape[0], x.shape[-1]
    if isinstance(padding, str):
        pad = tuple(same_padding(size, k, stride) for size in x.shape[1:3])
    else:
        pad = ((int(padding), int(padding)),) * 2
    if impl == "auto":
        impl = "gemm" if jax.default_backend() == "cpu" else "xla"
    if impl == "xla":
        y = lax.conv_general_dilated(
            x.astype(compute_dtype),
            w.astype(compute_dtype),
            (stride, stride),
            pad,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=c,
        )
        return y.astype(compute_dtype)
    return _depthwise(x, w, int(stride), pad, jnp.dtype(compute_dtype))


class DepthwiseConv(nn.Module):
    """Bias-free depthwise kxk convolution: the parameters (`kernel`, (k, k, 1, C),
    lecun_normal) and results of nn.Conv(C, (k, k), feature_group_count=C, use_bias=False)."""

    kernel_size: int = 3
    strides: int = 1
    padding: str | int = "SAME"
    dtype: jnp.dtype = F32
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        k, c = self.kernel_size, x.shape[-1]
        w = self.param("kernel", nn.initializers.lecun_normal(), (k, k, 1, c))
        return depthwise_conv2d(x, w, self.strides, self.padding, self.dtype, self.impl)
