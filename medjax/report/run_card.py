"""The run card: hardware, software, seed and timings recorded for every run.

Most medical-imaging papers do not report their set-up; medjax writes it down every time.
"""

import importlib.metadata
import os
import platform
import sys

import jax
import psutil

PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "grain",
    "numpy",
    "scikit-learn",
    "ml-collections",
    "dm-pix",
    "medjax",
)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def hardware() -> dict:
    devices = jax.devices()
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "host_cpu": _cpu_name(),
        "host_cpu_cores": os.cpu_count(),
        "host_memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def software() -> dict:
    return {
        "python": sys.version.split()[0],
        "os": platform.platform(),
        **{name: _version(name) for name in PACKAGES},
    }


def peak_memory() -> dict:
    """Peak device memory where the backend reports it, and the host's peak resident memory."""
    out = {}
    stats = jax.local_devices()[0].memory_stats() or {}  # this process can read its own only
    if "peak_bytes_in_use" in stats:
        out["device_peak_gib"] = round(stats["peak_bytes_in_use"] / 2**30, 3)
    try:
        import resource

        out["host_peak_rss_gib"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3
        )
    except ImportError:
        pass
    return out
