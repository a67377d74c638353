"""Model FLOPs utilisation: XLA's count of a compiled step's floating-point operations over the
step's time, as a fraction of the devices' peak rate for the compute dtype.

The count is what XLA will execute (forward, backward, optimizer update, on-device augmentation),
multiply and add counted separately. Peaks are the vendors' dense (no sparsity) figures.
"""

# Dense bfloat16 matrix rate per device, FLOP/s, by a substring of jax's device_kind; the first
# match wins, so the narrower names come first ("H100 PCIe" before "H100").
PEAK_BF16 = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("GH200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("TPU v6 lite", 918e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5p", 459e12),
    ("TPU v5", 459e12),
    ("TPU v4", 275e12),
)


def peak_flops(device_kind: str, dtype: str, override: float | None = None) -> float | None:
    """Peak FLOP/s of one device for `dtype`, or None when not known: float32 peaks depend on
    whether XLA uses TF32 or bf16 passes for matrix products, so only bfloat16 is tabled;
    `override` (--peak-flops) gives any other."""
    if override:
        return float(override)
    if dtype not in ("bfloat16", "bf16"):
        return None
    kind = device_kind.lower()
    return next((peak for name, peak in PEAK_BF16 if name.lower() in kind), None)


def compiled_flops(compiled) -> float | None:
    """FLOPs of one call of a compiled jax function, from XLA's cost analysis; None where the
    backend gives none. jax returned a list with one dict per program before 0.4.30."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # some backends cannot analyse cost; the rest of the row still stands
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def utilisation(flops: float | None, seconds: float, peak: float | None) -> float | None:
    """Fraction of one device's peak. A compiled program's count is already one device's share
    of a batch split over the mesh (XLA partitions before it counts), so no device count."""
    if not flops or not peak or seconds <= 0:
        return None
    return flops / seconds / peak
