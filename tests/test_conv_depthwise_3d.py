"""The CPU forms of depthwise and 3-D convolution must equal lax.conv_general_dilated, in values
and in both gradients, and their modules must be nn.Conv's (same parameters, same outputs)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from medjax.models import depthwise as dw_lib
from medjax.models.conv3d import Conv3D, conv3d

TOLERANCES = ((jnp.float32, 1e-5), (jnp.bfloat16, 3e-2))


def _check(ours, reference, x, w):
    """Values and both gradients of `ours(x, w, dtype)` against float32 `reference(x, w)`."""
    y_ref, vjp_ref = jax.vjp(reference, x, w)
    g = jax.random.normal(jax.random.key(9), y_ref.shape)
    for dtype, tol in TOLERANCES:
        y, vjp = jax.vjp(jax.jit(lambda a, b, dtype=dtype: ours(a, b, dtype)), x, w)
        assert y.dtype == dtype
        for what, got, want in zip(
            ("y", "dx", "dw"), (y, *vjp(g.astype(dtype))), (y_ref, *vjp_ref(g)), strict=True
        ):
            assert got.shape == want.shape, what
            err = float(jnp.abs(got.astype(jnp.float32) - want).max() / jnp.abs(want).max())
            assert err < tol, (what, dtype, err)


DEPTHWISE = [  # (batch, size, channels, kernel, stride, padding)
    (4, 28, 8, 3, 1, 1),
    (4, 28, 8, 3, 2, 1),
    (2, 7, 16, 3, 1, 1),
    (2, 9, 8, 5, 2, 2),
    (3, 9, 4, 3, 2, "SAME"),  # odd map at stride 2: "SAME" pads (1, 1)
    (3, 10, 4, 5, 2, "SAME"),  # even map: the odd pixel of the padding goes after
    (2, 6, 4, 3, 1, "SAME"),
]


# The weight gradient walks the batch in chunks: one chunk, 2 chunks of 2 images, 4 of 1 image.
CHUNKS = [(shape, 1 << 16) for shape in DEPTHWISE] + [(DEPTHWISE[0], 2 * 28 * 28 * 8)]
CHUNKS += [(DEPTHWISE[1], 300)]


@pytest.mark.parametrize("shape,chunk", CHUNKS, ids=str)
def test_depthwise_matches_grouped_lax_conv(shape, chunk, monkeypatch):
    monkeypatch.setattr(dw_lib, "_DW_CHUNK_ELEMS", chunk)
    n, h, c, k, s, p = shape
    kx, kw = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (n, h, h, c))
    w = jax.random.normal(kw, (k, k, 1, c)) * 0.3
    pad = "SAME" if p == "SAME" else [(p, p)] * 2

    def reference(a, b):
        dn = ("NHWC", "HWIO", "NHWC")
        return lax.conv_general_dilated(
            a, b, (s, s), pad, dimension_numbers=dn, feature_group_count=c, precision="highest"
        )

    _check(lambda a, b, dt: dw_lib.depthwise_conv2d(a, b, s, p, dt, impl="gemm"), reference, x, w)


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, "SAME"), (2, 1)])
def test_depthwise_module_is_flax_grouped_conv(stride, padding):
    x = jax.random.normal(jax.random.key(2), (2, 15, 15, 6))
    theirs = nn.Conv(6, (3, 3), stride, padding, feature_group_count=6, use_bias=False)
    for impl in ("gemm", "xla"):
        ours = dw_lib.DepthwiseConv(3, stride, padding, impl=impl)
        v = ours.init(jax.random.key(0), x)
        np.testing.assert_array_equal(
            v["params"]["kernel"], theirs.init(jax.random.key(0), x)["params"]["kernel"]
        )
        np.testing.assert_allclose(ours.apply(v, x), theirs.apply(v, x), atol=1e-5)


CONV3D = [  # (batch, size, cin, cout, kernel, stride)
    (2, 8, 1, 8, (3, 3, 3), 1),  # the 1-channel stem: XLA's 2-D conv per depth tap
    (2, 6, 8, 16, (3, 3, 3), 1),
    (2, 7, 8, 16, (3, 3, 3), 2),
    (2, 8, 8, 16, (1, 1, 1), 2),
    (2, 6, 3, 8, (3, 7, 7), (1, 2, 2)),  # r3d_18's ImageNet stem
]


@pytest.mark.parametrize("shape", CONV3D, ids=str)
def test_conv3d_matches_lax_conv(shape):
    n, d, ci, co, k, s = shape
    kx, kw = jax.random.split(jax.random.key(3))
    x = jax.random.normal(kx, (n, d, d, d, ci))
    w = jax.random.normal(kw, (*k, ci, co)) * 0.2
    strides = s if isinstance(s, tuple) else (s,) * 3

    def reference(a, b):
        pad = [(kk // 2, kk // 2) for kk in k]
        dn = ("NDHWC", "DHWIO", "NDHWC")
        return lax.conv_general_dilated(
            a, b, strides, pad, dimension_numbers=dn, precision="highest"
        )

    _check(lambda a, b, dt: conv3d(a, b, s, None, dt, impl="gemm"), reference, x, w)


def test_conv3d_module_is_flax_conv():
    x = jax.random.normal(jax.random.key(4), (2, 6, 6, 6, 3))
    theirs = nn.Conv(8, (3, 3, 3), 2, padding=[(1, 1)] * 3, use_bias=False)
    for impl in ("gemm", "xla"):
        ours = Conv3D(8, (3, 3, 3), 2, impl=impl)
        v = ours.init(jax.random.key(0), x)
        np.testing.assert_array_equal(
            v["params"]["kernel"], theirs.init(jax.random.key(0), x)["params"]["kernel"]
        )
        np.testing.assert_allclose(ours.apply(v, x), theirs.apply(v, x), atol=1e-5)
