"""The GEMM convolution must equal lax.conv, in values and in both gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from medjax.models import conv as conv_lib

SHAPES = [  # (batch, size, cin, cout, kernel, stride)
    (4, 28, 1, 8, 3, 1),
    (4, 28, 16, 8, 3, 1),
    (4, 28, 8, 16, 3, 2),
    (4, 28, 8, 16, 1, 2),
    (2, 7, 16, 32, 3, 2),
    (2, 4, 32, 16, 3, 1),
    (2, 9, 8, 8, 3, 2),
    (2, 8, 8, 8, 1, 1),
    (3, 6, 4, 4, 5, 1),
    (64, 14, 8, 8, 3, 1),
]


def _reference(x, w, s, p):
    return lax.conv_general_dilated(
        x, w, (s, s), [(p, p)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest"
    )


@pytest.mark.parametrize("chunk", [1 << 19, 700], ids=["one-chunk", "many-chunks"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gemm_conv_matches_lax_conv(shape, chunk, monkeypatch):
    monkeypatch.setattr(conv_lib, "_CHUNK_ELEMS", chunk)
    n, h, c, co, k, s = shape
    p = k // 2
    kx, kw, kg = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(kx, (n, h, h, c))
    w = jax.random.normal(kw, (k, k, c, co)) * 0.2
    y_ref, vjp_ref = jax.vjp(lambda a, b: _reference(a, b, s, p), x, w)
    g = jax.random.normal(kg, y_ref.shape)
    for dtype, tol in ((jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)):
        f = jax.jit(lambda a, b, dtype=dtype: conv_lib.conv2d(a, b, s, p, dtype, impl="gemm"))
        y, vjp = jax.vjp(f, x, w)
        assert y.dtype == x.dtype
        for got, want in zip((y, *vjp(g)), (y_ref, *vjp_ref(g)), strict=True):
            err = float(jnp.abs(got - want).max() / jnp.abs(want).max())
            assert err < tol, (dtype, err)


def test_module_matches_flax_conv_with_the_same_parameters():
    import flax.linen as nn

    x = jax.random.normal(jax.random.key(2), (2, 28, 28, 3))
    for k, s in ((3, 1), (3, 2), (1, 2)):
        ours = conv_lib.Conv(16, k, s, impl="gemm")
        theirs = nn.Conv(16, (k, k), (s, s), padding=[(k // 2, k // 2)] * 2, use_bias=False)
        v = ours.init(jax.random.key(0), x)
        np.testing.assert_allclose(
            v["params"]["kernel"], theirs.init(jax.random.key(0), x)["params"]["kernel"]
        )
        np.testing.assert_allclose(ours.apply(v, x), theirs.apply(v, x), atol=1e-4)
