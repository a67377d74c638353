"""Where arrays live: a 2-D device mesh (`data`, `fsdp`) from config.mesh, batches split over
all of it, and the train state replicated or sharded as config.sharding says.

The same program runs on one device or many; XLA (GSPMD) inserts the collectives (gradient
means, BatchNorm statistics, the all-gathers of sharded weights), so a run's numbers match a
single-device run with the same global batch, whatever the layout.

Strategies (config.sharding.strategy), for every leaf that no rule claims:
  replicated  every device holds the whole state (the default; best while it fits).
  fsdp        parameters, their optimizer state and EMA split over the `fsdp` axis along
              their largest axis that `fsdp` divides; a leaf with no such axis (an odd-sized
              kernel, a scalar) stays replicated rather than padded, so any model works.
Rules (config.sharding.rules) come first, the first match wins: "REGEX=SPEC" with REGEX
searched in the leaf's path ("params/stage1_block0/conv1/kernel"; the path also matches that
parameter's optimizer state and EMA copy, which therefore share its layout) and SPEC one of
`replicated`, `fsdp`, or one mesh axis or `None` per array axis ("None,None,None,fsdp").
Batch-norm statistics are always replicated: they are small and every device normalises with
them.
"""

import re

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from medjax.errors import ConfigError

AXES = ("data", "fsdp")
BATCH = AXES  # batches are split over every device of the mesh
STRATEGIES = ("replicated", "fsdp")


def mesh_shape(mesh_config, devices: int) -> tuple[int, int]:
    """(data, fsdp) from config.mesh for `devices` devices; data=-1 takes what fsdp leaves."""
    data, fsdp = int(mesh_config.data), int(mesh_config.fsdp)
    if fsdp < 1 or (data < 1 and data != -1):
        raise ConfigError(
            f"config.mesh: data={data}, fsdp={fsdp}; each must be >= 1 (data may be -1: "
            f"every device fsdp leaves)"
        )
    if data == -1:
        if devices % fsdp:
            raise ConfigError(
                f"config.mesh.fsdp={fsdp} does not divide the {devices} devices this run sees; "
                f"use a divisor of {devices}"
            )
        data = devices // fsdp
    if data * fsdp != devices:
        raise ConfigError(
            f"config.mesh data={data} x fsdp={fsdp} = {data * fsdp} devices, but this run sees "
            f"{devices} (all processes together); set config.mesh.data=-1 to use every device, "
            f"or change the mesh to multiply to {devices}"
        )
    return data, fsdp


def make_mesh(mesh_config=None) -> Mesh:
    shape = mesh_shape(mesh_config, jax.device_count()) if mesh_config else (jax.device_count(), 1)
    # Auto axes: XLA propagates the shardings through the step (GSPMD), so model code needs no
    # sharding annotations.
    return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * 2)


def data_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(BATCH))


def stacked_data_sharding(mesh: Mesh) -> NamedSharding:
    """(K, B, ...) batches of K runs trained together: each run's batch split over the mesh."""
    return NamedSharding(mesh, PartitionSpec(None, BATCH))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(name: str, batch_size: int, mesh: Mesh) -> None:
    if batch_size <= 0:
        raise ConfigError(f"{name} must be positive, not {batch_size}")
    n = mesh.devices.size
    if batch_size % n:
        raise ConfigError(
            f"{name}={batch_size} cannot be split evenly over the {n} devices of the mesh "
            f"{dict(mesh.shape)}; use a multiple of {n}"
        )


# -- the train state ----------------------------------------------------------------------------


def leaf_name(path) -> str:
    """'params/stage1_block0/conv1/kernel' for a key path into the train state."""
    parts = (getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)
    return "/".join(str(p) for p in parts)


def parse_rules(rules) -> list[tuple[re.Pattern, str, str]]:
    """[(compiled REGEX, SPEC, the rule as written)] from config.sharding.rules."""
    out = []
    for rule in rules:
        regex, eq, spec = str(rule).rpartition("=")
        if not eq or not regex:
            raise ConfigError(
                f"config.sharding.rules entry {rule!r}: write REGEX=SPEC, e.g. "
                f"'head/kernel=replicated' or 'conv.*/kernel=None,None,None,fsdp'"
            )
        try:
            out.append((re.compile(regex), spec.strip(), rule))
        except re.error as error:
            raise ConfigError(
                f"config.sharding.rules entry {rule!r}: bad regex ({error})"
            ) from None
    return out


def leaf_spec(spec: str, shape, fsdp: int, lead: int, where: str) -> PartitionSpec:
    """The PartitionSpec `spec` (a strategy or explicit axes) gives a leaf of `shape` whose
    first `lead` axes are runs stacked together (never split)."""
    if spec == "replicated" or len(shape) <= lead:
        return PartitionSpec()
    if spec == "fsdp":
        dims = [d for d in range(lead, len(shape)) if shape[d] % fsdp == 0 and shape[d] >= fsdp]
        if fsdp == 1 or not dims:
            return PartitionSpec()
        d = max(dims, key=lambda d: (shape[d], d))
        return PartitionSpec(*[None] * d, "fsdp")
    axes = [None if a.strip() in ("None", "") else a.strip() for a in spec.split(",")]
    bad = [a for a in axes if a is not None and a not in AXES]
    if bad or len(axes) > len(shape) - lead:
        raise ConfigError(
            f"{where}: spec {spec!r} does not fit a leaf of shape {tuple(shape[lead:])}; give "
            f"at most {len(shape) - lead} entries, each one of {AXES} or None, or use "
            f"'replicated' / 'fsdp'"
        )
    return PartitionSpec(*[None] * lead, *axes)


def state_shardings(abstract_state, mesh: Mesh, sharding_config, lead: int = 0):
    """A NamedSharding per leaf of the train state (abstract_state: its shapes), by
    config.sharding; `lead` = 1 when runs are stacked on a leading axis. A rule that matches no
    leaf is an error: it is almost always a typo."""
    strategy = sharding_config.strategy
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"config.sharding.strategy={strategy!r} is not one of {', '.join(STRATEGIES)}"
        )
    rules, used = parse_rules(sharding_config.rules), set()
    fsdp = mesh.shape["fsdp"]

    def sharding_of(path, leaf):
        name = leaf_name(path)
        spec = "replicated" if name.startswith(("batch_stats", "ema/batch_stats")) else strategy
        for i, (regex, rule_spec, rule) in enumerate(rules):
            if regex.search(name):
                used.add(i)
                where = f"config.sharding.rules entry {rule!r} at {name}"
                spec = leaf_spec(rule_spec, leaf.shape, fsdp, lead, where)
                _check_divisible(spec, leaf.shape, mesh, where)
                return NamedSharding(mesh, spec)
        return NamedSharding(mesh, leaf_spec(spec, leaf.shape, fsdp, lead, name))

    tree = jax.tree_util.tree_map_with_path(sharding_of, abstract_state)
    unused = [rule for i, (_, _, rule) in enumerate(rules) if i not in used]
    if unused:
        names = [leaf_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(abstract_state)]
        params = [n for n in names if n.startswith("params/")][:4]
        raise ConfigError(
            f"config.sharding.rules {unused} match no leaf of the train state; parameter paths "
            f"look like {params}"
        )
    return tree


def _check_divisible(spec: PartitionSpec, shape, mesh: Mesh, where: str) -> None:
    for size, axis in zip(shape, spec, strict=False):
        n = mesh.shape[axis] if axis else 1
        if size % n:
            raise ConfigError(
                f"{where}: an axis of size {size} cannot be split over {axis}={n}; shard "
                f"another axis or use 'fsdp', which replicates what does not divide"
            )


def bytes_per_device(tree) -> dict:
    """{device: bytes of `tree`'s arrays it holds}: what sharding saves, measured."""
    out = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            out[shard.device] = out.get(shard.device, 0) + shard.data.nbytes
    return out


def to_host(tree, mesh: Mesh):
    """`tree` as numpy arrays on every process, whatever its sharding: a collective when the
    arrays span several processes (FSDP), so every process must call it."""
    gather = jax.jit(lambda t: t, out_shardings=replicated(mesh))
    return jax.tree.map(np.asarray, gather(tree))


# -- batches ------------------------------------------------------------------------------------


def _batch_axis(sharding: NamedSharding) -> int:
    return [i for i, s in enumerate(sharding.spec) if s is not None][0]


def process_rows(sharding: NamedSharding, global_shape) -> slice:
    """The rows of a global batch whose examples this process's devices hold: with several
    processes each reads and sends only its own share."""
    axis = _batch_axis(sharding)
    shards = sharding.addressable_devices_indices_map(tuple(global_shape)).values()
    starts = [s[axis].start or 0 for s in shards]
    stops = [global_shape[axis] if s[axis].stop is None else s[axis].stop for s in shards]
    return slice(min(starts), max(stops))


def to_global(batch: np.ndarray, sharding: NamedSharding, global_shape=None) -> jax.Array:
    """One array split over the mesh from a batch this process holds: the whole global batch
    (each process keeps only its rows), or, with `global_shape`, just its own rows."""
    if global_shape is None:
        global_shape = batch.shape
        if jax.process_count() > 1:
            rows = process_rows(sharding, batch.shape)
            batch = batch[(slice(None),) * _batch_axis(sharding) + (rows,)]
    return jax.make_array_from_process_local_data(sharding, batch, tuple(global_shape))
