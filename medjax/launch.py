"""Start one run as several processes on this machine, as a multi-host run would be.

    python -m medjax.launch --nproc 2 [--cpu-devices 2] -- python -m medjax.run --config ... --workdir DIR

Each process gets the coordinator address (a free local port), the process count and its id
in JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (medjax.hosts reads them);
`--cpu-devices K` gives each K simulated CPU devices, for trying multi-host runs without
GPUs. When one process ends in failure the others are stopped (they would wait for it in
their next collective), with one message saying which ended and how; Ctrl-C reaches all of
them. On a cluster, use its own launcher instead: `srun python -m medjax.run --distributed`.
"""

import argparse
import os
import signal
import socket
import subprocess
import time

from medjax.cli import at_least, main_guard
from medjax.errors import ConfigError, TrainingError

GRACE_S = 15  # a stopped process's time to leave before it is killed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(i: int, n: int, port: int, cpu_devices: int) -> dict:
    env = dict(
        os.environ,
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
        JAX_NUM_PROCESSES=str(n),
        JAX_PROCESS_ID=str(i),
    )
    if cpu_devices:
        flags = env.get("XLA_FLAGS", "")
        flags = " ".join(f for f in flags.split() if "force_host_platform_device_count" not in f)
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={cpu_devices}".strip()
        env["JAX_PLATFORMS"] = "cpu"
    return env


def how(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def supervise(procs: list) -> int:
    """Wait for all; when one fails, stop the rest. Returns the run's exit status."""
    forwarded = []

    def forward(signum, _frame):
        forwarded.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            codes = [p.poll() for p in procs]
            # a process killed by a signal is the cause; the others' errors follow from it
            failed = sorted(
                ((i, c) for i, c in enumerate(codes) if c not in (None, 0)), key=lambda f: f[1] > 0
            )
            if failed and not forwarded:
                i, code = failed[0]
                stop(procs)
                raise TrainingError(
                    f"process {i} of {len(procs)} {how(code)}; the other processes were "
                    f"stopped (they cannot go on without it). Its error, if it printed one, is "
                    f"above. Run the same command again: the run resumes from its last "
                    f"checkpoint"
                )
            if all(c is not None for c in codes):
                return max(codes, key=abs)
            time.sleep(0.2)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def stop(procs: list) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + GRACE_S
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()  # blocked in a collective with the dead process: SIGTERM cannot land
            p.wait()


def main(argv):
    if "--" not in argv:
        raise ConfigError("give the command after --: medjax.launch --nproc 2 -- python -m ...")
    cut = argv.index("--")
    p = argparse.ArgumentParser(prog="python -m medjax.launch", description=__doc__)
    p.add_argument("--nproc", type=at_least(1), required=True, help="processes to start")
    p.add_argument(
        "--cpu-devices", type=at_least(0), default=0, help="simulated CPU devices per process"
    )
    p.add_argument("--port", type=int, default=0, help="coordinator port (default: a free one)")
    args = p.parse_args(argv[:cut])
    command = argv[cut + 1 :]
    if not command:
        raise ConfigError("no command after --")
    port = args.port or free_port()
    procs = [
        subprocess.Popen(command, env=child_env(i, args.nproc, port, args.cpu_devices))
        for i in range(args.nproc)
    ]
    code = supervise(procs)
    if code:
        raise SystemExit(code if code > 0 else 128 - code)


if __name__ == "__main__":
    main_guard(main)
