"""A 1-D device mesh named `data`: batches are split over it, parameters replicated.

The same program runs on one device or many; XLA inserts the cross-device reductions (gradient
means, BatchNorm statistics), so the result matches a single-device run with the same global batch.
"""

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from medjax.errors import ConfigError


def make_mesh() -> Mesh:
    # Auto axes: XLA propagates the batch sharding through the step (GSPMD), so model code
    # needs no sharding annotations.
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))


def data_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec("data"))


def stacked_data_sharding(mesh: Mesh) -> NamedSharding:
    """(K, B, ...) batches of K runs trained together: each run's batch split over `data`."""
    return NamedSharding(mesh, PartitionSpec(None, "data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(name: str, batch_size: int, mesh: Mesh) -> None:
    if batch_size <= 0:
        raise ConfigError(f"{name} must be positive, not {batch_size}")
    n = mesh.devices.size
    if batch_size % n:
        raise ConfigError(
            f"{name}={batch_size} cannot be split evenly over {n} devices; use a multiple of {n}"
        )


def to_global(batch: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """The global batch (identical on every host) as one array split over the mesh.

    Each host contributes only its own contiguous share, so with several hosts no example is
    fed twice; with one host this is the whole batch.
    """
    if jax.process_count() > 1:
        axis = list(sharding.spec).index("data")  # 1 for vectorized runs' (K, B, ...) batches
        batch = np.split(batch, jax.process_count(), axis=axis)[jax.process_index()]
    return jax.make_array_from_process_local_data(sharding, batch)
