"""One run over several processes (hosts), with JAX's multi-controller runtime.

Every process runs the same `python -m medjax.run` command; `jax.distributed.initialize`
joins them through a coordinator (process 0's host:port) before JAX touches a device. Then
the mesh spans every process's devices, each process feeds only its own rows of every batch
(medjax.train.sharding.to_global), evaluation outputs are replicated to all before metrics,
Orbax writes checkpoints collectively, and process 0 alone writes the workdir's other files.

Where the coordinates come from, first found wins:
  flags       --coordinator HOST:PORT --num-processes N --process-id I
  environment JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID (medjax.launch sets them)
  a cluster   --distributed: JAX detects SLURM (`srun`) and Open MPI by itself
"""

import os
import socket
import time

from medjax.errors import ConfigError

ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def add_arguments(parser) -> None:
    g = parser.add_argument_group("several processes (medjax.hosts)")
    g.add_argument("--coordinator", help="HOST:PORT of process 0 (env JAX_COORDINATOR_ADDRESS)")
    g.add_argument("--num-processes", type=int, help="processes in the run (env JAX_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, help="this process, 0..N-1 (env JAX_PROCESS_ID)")
    g.add_argument(
        "--distributed",
        action="store_true",
        help="take the processes from the cluster (SLURM's srun, Open MPI), as JAX detects them",
    )
    g.add_argument(
        "--coordinator-timeout",
        type=int,
        default=int(os.environ.get("MEDJAX_COORDINATOR_TIMEOUT", 120)),
        help="seconds to wait for every process to join (default 120)",
    )


def _int_env(name: str):
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} must be an integer") from None


def initialize(args) -> None:
    """Join the run's processes, if this is one of several; a no-op for a lone process."""
    coordinator = args.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not coordinator and not args.distributed:
        return
    n = args.num_processes if args.num_processes is not None else _int_env("JAX_NUM_PROCESSES")
    i = args.process_id if args.process_id is not None else _int_env("JAX_PROCESS_ID")
    if coordinator and (n is None or i is None):
        raise ConfigError(
            f"coordinator {coordinator} given without the number of processes and this one's "
            f"id: pass --num-processes N --process-id I (or set JAX_NUM_PROCESSES, "
            f"JAX_PROCESS_ID), or use --distributed on a SLURM or MPI cluster"
        )
    if n is not None and i is not None and not 0 <= i < n:
        raise ConfigError(f"process id {i} is not in 0..{n - 1} (--num-processes {n})")
    if coordinator and i:
        # A coordinator that never answers makes JAX abort the process from C++, with no
        # Python error to turn into a message: wait for its port here first.
        _wait_for(coordinator, i, args.coordinator_timeout)
    elif n:
        print(f"waiting up to {args.coordinator_timeout} s for {n} processes at {coordinator}")
    import jax

    try:
        jax.distributed.initialize(
            coordinator, n, i, initialization_timeout=args.coordinator_timeout
        )
    except Exception as error:  # JAX raises RuntimeError/XlaRuntimeError/ValueError here
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"process {i if i is not None else '?'} could not join the run through coordinator "
            f"{coordinator or '(detected from the cluster)'} within {args.coordinator_timeout} "
            f"s ({first[:200]}). Check that process 0 is running, that HOST:PORT is process "
            f"0's host and a free port reachable from here, and that every process was given "
            f"the same --num-processes"
        ) from None


def _wait_for(coordinator: str, process: int, timeout: float) -> None:
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"coordinator {coordinator!r}: write HOST:PORT, e.g. 10.0.0.1:1234")
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
            return
        except OSError as error:
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"process {process} could not join the run through coordinator "
                    f"{coordinator} within {timeout:g} s ({error}). Check that process 0 is "
                    f"running, that HOST:PORT is process 0's host and a port reachable from "
                    f"here, and that every process was given the same --coordinator"
                ) from None
            time.sleep(0.5)


def is_main() -> bool:
    """Whether this process writes the workdir's files (process 0; a lone process)."""
    import jax

    return jax.process_index() == 0


def agree(flag: bool) -> bool:
    """`flag` of any process, the same answer on all (a collective: every process calls it at
    the same step). A lone process's own flag."""
    import jax

    if jax.process_count() == 1:
        return bool(flag)
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(np.max(multihost_utils.process_allgather(np.int32(flag))))


def barrier(name: str) -> None:
    """Every process waits here until all have arrived (a lone process does not wait)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
