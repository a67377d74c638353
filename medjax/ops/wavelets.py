"""The 2D discrete wavelet transform as channels: `dwt(wavelet, level, bands)`, and its inverse.

Decimated, orthogonal filter banks with PyWavelets' mode='periodization': the image is taken as
periodic, so every level halves each side exactly and the transform is orthonormal (its inverse
is its transpose: `idwt2` reconstructs perfectly). Coefficients equal pywt.dwt2/wavedec2's.

Band names give the filter along the width (x) first, then along the height (y), as in the
usual LL/LH/HL/HH picture: LH = pywt's cH (low-pass along x, high-pass along y: horizontal
edges), HL = cV (vertical edges), HH = cD (diagonals).
"""

import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.ops.edges import check_channels, source, with_image
from medjax.ops.pipeline import PREPROCESS_OPS
from medjax.ops.wavelet_filters import DEC_LO

BANDS = ("LL", "LH", "HL", "HH")
# Band -> its detail coefficients' position in pywt's (cH, cV, cD).
_PYWT_DETAIL = {"LH": 0, "HL": 1, "HH": 2}


def wavelet_filters(name: str):
    """(low-pass, high-pass) decomposition taps of an orthogonal wavelet, as pywt's dec_lo/dec_hi."""
    if name not in DEC_LO:
        raise ValueError(f"unknown wavelet {name!r}; valid: {', '.join(DEC_LO)}")
    lo = jnp.asarray(DEC_LO[name], jnp.float32)
    n = lo.shape[0]
    # The quadrature mirror: hi[k] = (-1)^(k+1) lo[n-1-k].
    hi = lo[::-1] * jnp.asarray([(-1.0) ** (k + 1) for k in range(n)], jnp.float32)
    return lo, hi


def _analysis(x, taps, axis):
    """out[i] = sum_j taps[j] x[(2i + n/2 - j) mod N] along `axis`: pywt's periodized
    convolution followed by keeping every second sample."""
    n = taps.shape[0]
    return sum(
        taps[j]
        * jnp.take(jnp.roll(x, j - n // 2, axis=axis), jnp.arange(0, x.shape[axis], 2), axis)
        for j in range(n)
    )


def _synthesis(lo_coef, hi_coef, lo, hi, axis):
    """The transpose of `_analysis` for both filters (= its inverse: the bank is orthonormal)."""
    n = lo.shape[0]
    size = 2 * lo_coef.shape[axis]
    out = 0.0
    for j in range(n):
        merged = lo[j] * lo_coef + hi[j] * hi_coef
        shape = list(merged.shape)
        shape[axis] = size
        up = jnp.zeros(shape, merged.dtype)
        index = [slice(None)] * merged.ndim
        index[axis] = slice(0, size, 2)
        up = up.at[tuple(index)].set(merged)
        out = out + jnp.roll(up, n // 2 - j, axis=axis)
    return out


def dwt2(x, wavelet: str = "haar"):
    """One level over axes 0 (height) and 1 (width) of x: (LL, (LH, HL, HH)), each half the
    size, equal to pywt.dwt2(x, wavelet, mode='periodization', axes=(0, 1))."""
    lo, hi = wavelet_filters(wavelet)
    rows_lo, rows_hi = _analysis(x, lo, 0), _analysis(x, hi, 0)
    ll, hl = _analysis(rows_lo, lo, 1), _analysis(rows_lo, hi, 1)
    lh, hh = _analysis(rows_hi, lo, 1), _analysis(rows_hi, hi, 1)
    return ll, (lh, hl, hh)


def idwt2(coeffs, wavelet: str = "haar"):
    """The inverse of `dwt2`: (LL, (LH, HL, HH)) -> x."""
    lo, hi = wavelet_filters(wavelet)
    ll, (lh, hl, hh) = coeffs
    rows_lo = _synthesis(ll, hl, lo, hi, 1)
    rows_hi = _synthesis(lh, hh, lo, hi, 1)
    return _synthesis(rows_lo, rows_hi, lo, hi, 0)


def check_level(shape, level: int) -> None:
    """Refuse a level whose halvings would not divide the image's sides exactly."""
    step = 2**level
    if shape[0] % step or shape[1] % step:
        deepest = 0
        while shape[0] % 2 ** (deepest + 1) == 0 and shape[1] % 2 ** (deepest + 1) == 0:
            deepest += 1
        raise ConfigError(
            f"dwt(level={level}) halves the image {level} times, so its sides must be "
            f"divisible by {step}, but the image is {shape[0]}x{shape[1]} px; use level <= "
            f"{deepest} or resize/crop the image to a multiple of {step} first"
        )


def wavedec2(x, wavelet: str = "haar", level: int = 1):
    """[LL_level, (LH, HL, HH)_level, ..., (LH, HL, HH)_1], as pywt.wavedec2 (periodization)."""
    check_level(x.shape, level)
    details = []
    for _ in range(level):
        x, detail = dwt2(x, wavelet)
        details.append(detail)
    return [x, *reversed(details)]


def waverec2(coeffs, wavelet: str = "haar"):
    """The inverse of `wavedec2`."""
    x = coeffs[0]
    for detail in coeffs[1:]:
        x = idwt2((x, detail), wavelet)
    return x


def _parse_bands(bands: str):
    names = tuple(b.strip().upper() for b in bands.split(",") if b.strip())
    bad = [b for b in names if b not in BANDS]
    if not names or bad or len(set(names)) != len(names):
        raise ValueError(
            f"bands={bands!r} must name some of {', '.join(BANDS)} once each, comma-separated"
        )
    return names


def _upsample(band, factor: int):
    """Each coefficient repeated over the factor x factor block of pixels it summarises."""
    return jnp.repeat(jnp.repeat(band, factor, axis=0), factor, axis=1)


@PREPROCESS_OPS.register("dwt")
def dwt(
    wavelet: str = "haar",
    level: int = 1,
    bands: str = "LL,LH,HL,HH",
    keep_image: bool = True,
    channels: int = 0,
):
    """Wavelet sub-bands as extra channels (images only): LL of the deepest level, and each
    detail band of every level from the deepest to the first, each brought back to the image
    size by nearest-neighbour repetition (a level-l coefficient fills its 2^l x 2^l block), so
    the network sees where each band responds. Channels: the image's (with keep_image), then
    band by band, level by level, the input channels in order. Coefficients are unscaled, as
    pywt's: the level-l LL is 2^l times the block mean. `channels` as for the edge ops."""
    wavelet_filters(wavelet)
    if not isinstance(level, int) or level < 1:
        raise ValueError(f"level must be a positive integer, got {level!r}")
    names = _parse_bands(bands)
    check_channels(channels)

    def apply(image):
        if image.ndim != 3:
            raise ConfigError(
                f"dwt is a 2D transform for images (H, W, C), not shape {tuple(image.shape)}; "
                f"for volumes use sobel or laplacian, or remove dwt from config.data.preprocess"
            )
        coeffs = wavedec2(source(image, channels), wavelet, level)
        feats = []
        for name in names:
            if name == "LL":
                feats.append(_upsample(coeffs[0], 2**level))
                continue
            for depth, detail in zip(range(level, 0, -1), coeffs[1:], strict=True):
                feats.append(_upsample(detail[_PYWT_DETAIL[name]], 2**depth))
        return with_image(image, feats, keep_image)

    return apply
