"""A sweep's unfinished runs as Ray tasks: `python -m medjax.sweep ... --ray [ADDRESS]`.

Each task starts the same `python -m medjax.run` command the other modes use, in a fresh
process on the worker (a fresh JAX per run; Ray has set CUDA_VISIBLE_DEVICES for a task that
asked for GPUs), and writes the run's log.txt as --parallel does. Workers must see the sweep's
workdir at the same path (a shared file system) and have medjax installed. This process
records failures and writes the summary, so the rules of the other modes hold: finished runs
are skipped, unfinished ones resume from their checkpoints, a failed run is recorded and the
others go on.
"""

import contextlib
import ctypes
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time

from tqdm.auto import tqdm

from medjax.errors import ConfigError
from medjax.sweep.modes import _bar, _stop, error_from_log
from medjax.sweep.runner import (
    LOG,
    cache_env,
    clear_failure,
    command,
    record_failure,
    run_dir,
    status_of,
)

CONNECT_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--ray needs the ray package, which medjax does not install by default: "
            "pip install 'medjax[ray]' (or pip install 'ray>=2.9')"
        ) from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    """Where a Ray address listens: ray://host[:10001] (Ray Client) or host[:6379] (GCS)."""
    client = address.startswith("ray://")
    rest = address.removeprefix("ray://").split("/")[0]
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = rest, "10001" if client else "6379"
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ConfigError(
            f"--ray {address}: write host:port (a cluster's head, e.g. 10.0.0.1:6379), "
            f"ray://host:10001 (Ray Client) or auto"
        ) from None


def _unreachable(address: str, why: str) -> ConfigError:
    return ConfigError(
        f"no Ray cluster answers at {address} ({why}); check that the cluster is up (`ray "
        f"status` on its head node), the address and port (host:6379, or ray://host:10001 "
        f"for Ray Client) and that this machine can reach it. No run was started; run the "
        f"same command again once it answers, or drop the address to start Ray on this machine"
    )


def connect(address: str | None):
    """(the ray module, connected; whether this call connected it; whether it started Ray on
    this machine). An address is first tried with a plain TCP connection of a few seconds,
    because ray.init waits for an absent head node for minutes."""
    ray = import_ray()
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    if target not in ("local", "auto"):
        host, port = _host_port(target)
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as e:
            why = f"nothing accepted a connection to {host}:{port} within {CONNECT_TIMEOUT_S:g} s"
            raise _unreachable(target, f"{why}: {e.strerror or e}") from None
    if ray.is_initialized():  # a notebook or test that connected Ray itself
        return ray, False, False
    local = target == "local"
    try:
        if local:
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=target, log_to_driver=False)
    except (ConnectionError, RuntimeError, TimeoutError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if local:
            raise ConfigError(f"Ray did not start on this machine: {first}") from None
        raise _unreachable(target, first) from None
    return ray, True, local


def resources(ray, gpus: float | None, cpus: float | None, local: bool):
    """(GPUs, CPUs) each run asks for; by default one CPU, and one GPU where the cluster has
    any."""
    total = ray.cluster_resources()
    if gpus is None:
        gpus = 1.0 if total.get("GPU", 0) > 0 else 0.0
    cpus = 1.0 if cpus is None else cpus
    short = [
        f"{want:g} {kind} per run, the cluster has {total.get(kind, 0):g}"
        for kind, want in (("GPU", gpus), ("CPU", cpus))
        if want > total.get(kind, 0)
    ]
    if short and local:  # no node will ever join: the tasks would wait forever
        raise ConfigError(
            f"--ray on this machine: {'; '.join(short)}; lower --ray-gpus-per-run or "
            f"--ray-cpus-per-run, or give the address of a cluster that has them"
        )
    if short:
        tqdm.write(f"sweep: {'; '.join(short)} now: the runs wait until a node has them")
    return gpus, cpus


@dataclasses.dataclass
class Cluster:
    ray: object  # the ray module, connected
    connected_here: bool  # and so disconnected (and a local Ray stopped) by close()
    gpus: float
    cpus: float
    # ray.init installs its own SIGTERM handler and shutdown leaves it: put back this
    # process's own, so a later run in it saves a checkpoint on SIGTERM again
    handlers: dict = dataclasses.field(default_factory=dict)

    def run(self, sweep, workdir: str, todo: list, rerun: set) -> None:
        run_ray(self.ray, sweep, workdir, todo, rerun, self.gpus, self.cpus)

    def close(self) -> None:
        if self.connected_here:
            self.ray.shutdown()
        restore_signals(self.handlers)


SIGNALS = (signal.SIGINT, signal.SIGTERM)


def restore_signals(handlers: dict) -> None:
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


def start(address: str | None, gpus: float | None, cpus: float | None, todo: list):
    """The Ray cluster to run `todo` on, its resources checked; None when `todo` is empty
    (though a missing ray package is said even then)."""
    import_ray()
    if not todo:
        return None
    handlers = {sig: signal.getsignal(sig) for sig in SIGNALS}
    ray, connected, local = connect(address)
    try:
        return Cluster(ray, connected, *resources(ray, gpus, cpus, local), handlers)
    except BaseException:
        if connected:
            ray.shutdown()
        restore_signals(handlers)
        raise


def _child_setup() -> None:
    # Ray workers block SIGINT, and a blocked signal stays blocked across exec: the run would
    # never see the SIGINT that asks it to save a checkpoint.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if sys.platform == "linux":  # the worker killed (Ray's memory monitor, a lost node): the
        # run gets SIGTERM, saves a checkpoint and stops, rather than going on unwatched
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def run_task(argv: list, extra_env: dict, log_path: str) -> tuple[int, str, float]:
    """A Ray task's body: one run as a subprocess of the worker, its output in `log_path`.
    Returns the exit status, the error the run reported (empty when it succeeded) and its time.
    """
    import medjax

    env = {**os.environ, **extra_env}  # the worker's own: Ray's CUDA_VISIBLE_DEVICES
    root = os.path.dirname(os.path.dirname(os.path.abspath(medjax.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    start = time.perf_counter()
    with open(log_path, "a") as log:
        # The worker's Python, which may live elsewhere than the driver's. Own session: a
        # Ctrl-C in the terminal does not reach the run, only the one SIGINT below.
        proc = subprocess.Popen(
            [sys.executable, *argv[1:]],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_child_setup,
        )
    try:
        while True:  # in short waits: ray.cancel interrupts Python code, not a blocking wait
            try:
                code = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:  # ray.cancel: let the run save its checkpoint, then stop
        proc.send_signal(signal.SIGINT)
        proc.wait()
        raise
    error = error_from_log(log_path) if code else ""
    return code, error, time.perf_counter() - start


def _finished(ray, ref, run, workdir: str) -> None:
    path = run_dir(workdir, run.name)
    try:
        code, error, seconds = ray.get(ref)
    except ray.exceptions.RayError as e:  # the worker or its node died, or the task broke
        code, error, seconds = -1, f"Ray: {str(e).strip().splitlines()[-1]}", 0.0
    if code == 0 and status_of(path) == "finished":
        tqdm.write(f"sweep: {run.name} finished ({seconds:.0f} s)")
        return
    error = error or f"the run exited with status 0 but {path} holds no results.json"
    tqdm.write(f"sweep: {run.name} failed: {record_failure(path, error)}")


def run_ray(ray, sweep, workdir: str, todo: list, rerun: set, gpus: float, cpus: float):
    """Every run of `todo` as one Ray task asking for `gpus` and `cpus`; waits for all."""
    env = cache_env(workdir)
    if 0 < gpus < 1 and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ:
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 * gpus:.2f}"  # runs share a GPU
    task = ray.remote(run_task).options(num_gpus=gpus, num_cpus=cpus, max_retries=0)
    pending = {}
    with _bar(sweep, todo) as bar:
        try:
            for run in todo:
                path = run_dir(workdir, run.name)
                os.makedirs(path, exist_ok=True)
                clear_failure(path)
                argv = command(sweep, workdir, run, run.name in rerun)
                pending[task.remote(argv, env, os.path.abspath(os.path.join(path, LOG)))] = run
            tqdm.write(
                f"sweep: {len(todo)} runs sent to Ray ({gpus:g} GPU, {cpus:g} CPU each); each "
                f"logs to its log.txt"
            )
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in done:
                    _finished(ray, ref, pending.pop(ref), workdir)
                    bar.update(1)
        except KeyboardInterrupt:
            _cancel(ray, pending)
            names = [
                r.name
                for r in pending.values()
                if status_of(run_dir(workdir, r.name)) != "finished"
            ]
            more = f" and {len(names) - 2} more" if len(names) > 2 else ""
            if names:  # else every run finished as Ctrl-C came
                raise _stop(", ".join(names[:2]) + more) from None


def _cancel(ray, pending: dict) -> None:
    """Queued tasks are dropped; running ones pass one SIGINT to their run, which saves a
    checkpoint before it exits; wait for that, as --parallel does."""
    for ref in pending:
        ray.cancel(ref)
    for ref in pending:
        with contextlib.suppress(ray.exceptions.RayError):
            ray.get(ref)
