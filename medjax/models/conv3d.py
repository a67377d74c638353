"""3-D convolution (dense and depthwise) as a sum, over the kernel's depth taps, of 2-D
convolutions on the CPU.

Why: XLA:CPU (jax 0.12) has no fast 3-D convolution; its generic loop, and the gradients'
more so, is 10-50x slower per FLOP than the 2-D GEMM convolution of medjax.models.conv. A
kd x kh x kw kernel at depth stride sd is the sum over its kd depth slices of 2-D convolutions
of the matching input slices (every sd-th slice from the tap's offset), with depth folded into
the batch: kd calls of `conv2d`, each with its GEMM forward and gradients. `impl="xla"` (and
"auto" on GPUs and TPUs) keeps lax.conv.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from medjax.models.conv import F32, conv2d
from medjax.models.depthwise import depthwise_conv2d


def _pairs(v, n):
    return tuple(v) if isinstance(v, tuple | list) else (v,) * n


def conv3d(x, w, strides=1, padding=None, compute_dtype=F32, impl="auto"):
    """NDHWC x, DHWIO w, symmetric per-axis padding (default k//2 on each axis); the result
    is in compute_dtype. The in-plane kernel must be square and the in-plane strides equal
    (the 3D models' kernels are), or "xla" is used."""
    kd, kh, kw = w.shape[:3]
    sd, sh, sw = _pairs(strides, 3)
    pd, ph, pw = (kd // 2, kh // 2, kw // 2) if padding is None else _pairs(padding, 3)
    if impl == "auto":
        impl = "gemm" if jax.default_backend() == "cpu" else "xla"
    if impl == "xla" or kh != kw or sh != sw or ph != pw:
        y = lax.conv_general_dilated(
            x.astype(compute_dtype),
            w.astype(compute_dtype),
            (sd, sh, sw),
            [(pd, pd), (ph, ph), (pw, pw)],
            dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
        )
        return y.astype(compute_dtype)
    conv = lambda xa, wa: conv2d(xa, wa, sh, ph, compute_dtype, "gemm")
    return _sum_over_depth_taps(x, w, sd, pd, conv).astype(compute_dtype)


def _sum_over_depth_taps(x, w, sd, pd, conv):
    """sum over a of conv(input slices of depth tap a, w[a]), depth folded into the batch:
    a 3-D convolution from 2-D ones (float32 sums)."""
    n, d = x.shape[:2]
    kd = w.shape[0]
    do = (d + 2 * pd - kd) // sd + 1
    xp = jnp.pad(x, ((0, 0), (pd, pd), (0, 0), (0, 0), (0, 0)))
    y = 0
    for a in range(kd):
        xa = lax.slice_in_dim(xp, a, a + (do - 1) * sd + 1, sd, axis=1)
        y = y + conv(xa.reshape(n * do, *x.shape[2:]), w[a]).astype(F32)
    return y.reshape(n, do, *y.shape[1:])


def depthwise_conv3d(x, w, stride: int = 1, compute_dtype=F32, impl="auto"):
    """NDHWC x, (k, k, k, 1, C) w (one filter per channel), stride on every axis, torch's
    k // 2 padding; the result is in compute_dtype. On the CPU ("gemm", the config's name for
    medjax's own forms) a sum over depth taps of depthwise.depthwise_conv2d, whose shifted
    multiply-add form is far faster there than XLA's grouped convolution."""
    k = w.shape[0]
    if impl == "auto":
        impl = "gemm" if jax.default_backend() == "cpu" else "xla"
    if impl == "xla":
        y = lax.conv_general_dilated(
            x.astype(compute_dtype),
            w.astype(compute_dtype),
            (stride,) * 3,
            [(k // 2, k // 2)] * 3,
            dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
            feature_group_count=x.shape[-1],
        )
        return y.astype(compute_dtype)
    conv = lambda xa, wa: depthwise_conv2d(xa, wa, stride, k // 2, compute_dtype, "gemm")
    return _sum_over_depth_taps(x, w, stride, k // 2, conv).astype(compute_dtype)


class Conv3D(nn.Module):
    """Bias-free 3-D convolution with torch's symmetric padding (kernel // 2 on each axis):
    the parameters (`kernel`, DHWIO, lecun_normal) and results of nn.Conv(features, kernel,
    strides, padding=[(k // 2, k // 2)] * 3, use_bias=False). `dtype` is the compute dtype."""

    features: int
    kernel_size: tuple[int, int, int] = (3, 3, 3)
    strides: int | tuple[int, int, int] = 1
    dtype: jnp.dtype = F32
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        shape = (*self.kernel_size, x.shape[-1], self.features)
        w = self.param("kernel", nn.initializers.lecun_normal(), shape)
        return conv3d(x, w, self.strides, None, self.dtype, self.impl)


class DepthwiseConv3D(nn.Module):
    """Bias-free depthwise k x k x k convolution with torch's k // 2 padding: the parameters
    (`kernel`, (k, k, k, 1, C), lecun_normal) and results of nn.Conv(C, (k, k, k), strides,
    padding=[(k // 2, k // 2)] * 3, feature_group_count=C, use_bias=False)."""

    kernel_size: int = 3
    strides: int = 1
    dtype: jnp.dtype = F32
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        k, c = self.kernel_size, x.shape[-1]
        w = self.param("kernel", nn.initializers.lecun_normal(), (k, k, k, 1, c))
        return depthwise_conv3d(x, w, self.strides, self.dtype, self.impl)
