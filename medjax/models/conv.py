"""2-D convolution whose weight gradient (and, in bfloat16, every pass) runs as chunked
GEMMs on the CPU.

Why: with XLA:CPU (jax 0.12) on a 2-core AVX-512/AMX Xeon, measured per layer of ResNet-18:
  * XLA's weight-gradient convolution is 2-10x slower than its forward one, and its forward
    convolution is poor at 7x7 and 4x4 spatial sizes. This is most of the gap to PyTorch.
  * Dense `jnp.dot` runs at ~200-260 GFLOP/s in float32 and 0.6-1.4 TFLOP/s in bfloat16 (AMX),
    but XLA's bfloat16 *convolutions* are no faster than float32 ones.
  * A dot contracting both operands over their leading dim (P^T G) leaves the fast path
    (43 vs 596 GFLOP/s), so the weight gradient builds its patch matrix as (k*k*Cin, M).
  * im2col cost is dominated by touching fresh memory (64 ms for one 130 MB buffer, ~25 ms
    in 16 reused chunks), so every formulation walks the batch in chunks of ~2^19 elements.
So the convolution is a `custom_vjp` whose weight gradient (and, in bfloat16, also forward and
input gradient; in float32 also a strided conv's input gradient) are im2col GEMMs over batch chunks, with the multiplies in the compute dtype
and float32 accumulation. On GPUs and TPUs the vendor convolutions are better; `impl="auto"` uses them there.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

F32 = jnp.float32
_DN = ("NHWC", "HWIO", "NHWC")
_CHUNK_ELEMS = 1 << 19  # input elements per batch chunk; 2^18..2^20 measured equally good
IMPLS = ("auto", "gemm", "xla")


def _out_size(h, k, s, p):
    return (h + 2 * p - k) // s + 1


def _xla(x, w, s, p, dt):
    return lax.conv_general_dilated(
        x.astype(dt),
        w.astype(dt),
        (s, s),
        [(p, p)] * 2,
        dimension_numbers=_DN,
        preferred_element_type=F32,
    )


def _gemm_wins(kind: str, w_shape, dt, stride: int = 1) -> bool:
    """Static choice per pass, from per-layer measurements of ResNet-18 at 28 px.

    The weight gradient always gains from the GEMM form, even for the 1-channel stem. The
    forward pass and the input gradient gain in bfloat16, where the GEMMs use the CPU's
    bfloat16 instructions; in float32 XLA's own convolution is as fast for them and needs no
    patch buffers, except the input gradient of a strided conv, which XLA computes as a
    convolution of the zero-interleaved gradient. With a tiny contraction (the 1-channel
    stem) XLA's direct convolution wins the forward pass and input gradient.
    """
    if kind == "dw":
        return True
    k, kw, cin, cout = w_shape
    if k * kw * min(cin, cout) < 64:
        return False
    return jnp.dtype(dt) == jnp.bfloat16 or (kind == "dx" and stride > 1)


def _batch_chunk(n, per_image, elems=_CHUNK_ELEMS):
    """The largest divisor of n whose chunk holds at most `elems` elements (at least 1)."""
    cb = max(1, min(n, elems // max(per_image, 1)))
    while n % cb:
        cb -= 1
    return cb


def _map_batch(f, cb, *arrs):
    """f over batch chunks of size cb, outputs concatenated along the batch."""
    n = arrs[0].shape[0]
    if cb == n:
        return f(*arrs)
    ys = lax.map(lambda a: f(*a), tuple(a.reshape(n // cb, cb, *a.shape[1:]) for a in arrs))
    return ys.reshape(n, *ys.shape[2:])


def _sum_batch(f, cb, *arrs):
    """Sum of f over batch chunks; the accumulator (a weight gradient) is small."""
    n = arrs[0].shape[0]
    if cb == n:
        return f(*arrs)
    xs = tuple(a.reshape(n // cb, cb, *a.shape[1:]) for a in arrs)
    out = jax.eval_shape(f, *(a[0] for a in xs))
    return lax.scan(lambda acc, a: (acc + f(*a), None), jnp.zeros(out.shape, out.dtype), xs)[0]


def _taps(xp, k, s, ho, wo, axes):
    """The k*k strided windows of a padded array; `axes` are the positions of (H, W)."""
    a, b = axes
    out = []
    for i in range(k):
        for j in range(k):
            start, stop, step = [0] * xp.ndim, list(xp.shape), [1] * xp.ndim
            start[a], start[b] = i, j
            stop[a], stop[b] = i + (ho - 1) * s + 1, j + (wo - 1) * s + 1
            step[a] = step[b] = s
            out.append(lax.slice(xp, start, stop, step))
    return out


def _gemm_fwd(x, w, s, p, dt):
    """im2col (M, k*k*Cin) @ (k*k*Cin, Cout), batch chunk by batch chunk."""
    k, _, cin, cout = w.shape
    n, h, wd, _ = x.shape
    ho, wo = _out_size(h, k, s, p), _out_size(wd, k, s, p)
    wm = w.astype(dt).reshape(k * k * cin, cout)

    def one(xc):
        xp = jnp.pad(xc.astype(dt), ((0, 0), (p, p), (p, p), (0, 0)))
        cols = _taps(xp, k, s, ho, wo, (1, 2))
        pm = cols[0] if len(cols) == 1 else jnp.concatenate(cols, -1)
        y = jnp.dot(pm.reshape(-1, k * k * cin), wm, preferred_element_type=F32)
        return y.reshape(xc.shape[0], ho, wo, cout)

    return _map_batch(one, _batch_chunk(n, h * wd * cin), x)


def _gemm_dw(x, g, k, s, p, dt):
    """dW = P^T G with P^T built directly as (k*k*Cin, M), accumulated in float32."""
    n, h, wd, cin = x.shape
    ho, wo, cout = g.shape[1:]

    def one(xc, gc):
        xt = jnp.pad(xc.astype(dt).transpose(3, 0, 1, 2), ((0, 0), (0, 0), (p, p), (p, p)))
        pt = jnp.stack(_taps(xt, k, s, ho, wo, (2, 3))).reshape(k * k * cin, -1)
        return jnp.dot(pt, gc.astype(dt).reshape(-1, cout), preferred_element_type=F32)

    return _sum_batch(one, _batch_chunk(n, h * wd * cin), x, g).reshape(k, k, cin, cout)


def _gemm_dx(g, w, x_shape, s, p, dt):
    """Stride 1: a forward conv of g with the flipped, in/out-swapped kernel. Otherwise
    dP = G W^T, then col2im as a sum of interior-padded taps (XLA fuses it into one loop)."""
    k, _, cin, cout = w.shape
    n, h, wd, _ = x_shape
    if s == 1 and p <= k - 1:
        wf = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
        return _gemm_fwd(g, wf, 1, k - 1 - p, dt)[:, :h, :wd]
    ho, wo = g.shape[1:3]
    hp, wp = h + 2 * p, wd + 2 * p
    wt = w.astype(dt).reshape(k * k * cin, cout).T

    def one(gc):
        m = gc.shape[0]
        dp = jnp.dot(gc.astype(dt).reshape(-1, cout), wt, preferred_element_type=F32)
        dp = dp.reshape(m, ho, wo, k * k, cin)
        acc = 0
        for t in range(k * k):
            i, j = divmod(t, k)
            cfg = [
                (0, 0, 0),
                (i, hp - i - (ho - 1) * s - 1, s - 1),
                (j, wp - j - (wo - 1) * s - 1, s - 1),
                (0, 0, 0),
            ]
            acc = acc + lax.pad(dp[:, :, :, t], jnp.zeros((), F32), cfg)
        return acc[:, p : p + h, p : p + wd]

    return _map_batch(one, _batch_chunk(n, ho * wo * cout), g)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, stride, pad, dt):
    if _gemm_wins("fwd", w.shape, dt):
        return _gemm_fwd(x, w, stride, pad, dt).astype(x.dtype)
    return _xla(x, w, stride, pad, dt).astype(x.dtype)


def _conv_fwd(x, w, stride, pad, dt):
    # The residual is kept in the compute dtype: half the activation memory under bfloat16.
    return _conv(x, w, stride, pad, dt), (x.astype(dt), w)


def _conv_bwd(stride, pad, dt, res, g):
    x, w = res
    gemm_dx = _gemm_wins("dx", w.shape, dt, stride)
    gemm_dw = _gemm_wins("dw", w.shape, dt)
    if not (gemm_dx and gemm_dw):  # XLA's transposed convolutions, traced once for both
        _, vjp = jax.vjp(lambda a, b: _xla(a, b, stride, pad, dt), x, w.astype(dt))
        dx, dw = vjp(g.astype(F32))
    if gemm_dx:
        dx = _gemm_dx(g, w, x.shape, stride, pad, dt)
    if gemm_dw:
        dw = _gemm_dw(x, g, w.shape[0], stride, pad, dt)
    return dx.astype(g.dtype), dw.astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv2d(x, w, stride: int = 1, padding: int | None = None, compute_dtype=F32, impl="auto"):
    """NHWC x, HWIO w, symmetric integer padding (default k//2); the result has x's dtype.

    impl: "gemm" (the chunked GEMM formulation), "xla" (lax.conv), or "auto" (gemm on CPU).
    Square 1x1/3x3 kernels at stride 1 or 2 take the GEMM path; anything else uses lax.conv.
    """
    k, kw = w.shape[:2]
    padding = k // 2 if padding is None else int(padding)
    if impl == "auto":
        impl = "gemm" if jax.default_backend() == "cpu" else "xla"
    if impl == "xla" or k != kw or k not in (1, 3) or stride not in (1, 2):
        return _xla(x, w, stride, padding, compute_dtype).astype(x.dtype)
    return _conv(x, w, int(stride), padding, jnp.dtype(compute_dtype))


class Conv(nn.Module):
    """Bias-free convolution with symmetric integer padding and a `kernel` param (HWIO,
    lecun_normal) as nn.Conv's; `dtype` is the compute dtype, parameters stay float32."""

    features: int
    kernel_size: int = 3
    strides: int = 1
    padding: int | None = None
    dtype: jnp.dtype = F32
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        w = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features))
        return conv2d(x, w, self.strides, self.padding, self.dtype, self.impl).astype(self.dtype)
