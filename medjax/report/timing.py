"""How long a run took, over every process that worked on it.

A run that is killed and resumed is several processes. Each records its share in the
workdir's timing.json as it goes, so the run card of the finished run counts them all,
including what a killed process spent after its last checkpoint: that time was spent too.
"""

import datetime
import json
import os
import socket
import time

from medjax.train.workdir import write_json

TIMING = "timing.json"


class ProcessClock:
    """This process's wall, compile and training time, and the images it trained on."""

    def __init__(self):
        self.started = datetime.datetime.now().isoformat(timespec="seconds")
        self._t0 = time.perf_counter()
        self.compile_s = self.train_s = 0.0
        self.images = self.first_step = self.step = 0
        self.start_interval()

    def wall_s(self) -> float:
        return time.perf_counter() - self._t0

    def start_interval(self) -> None:
        """Training time is counted between logs, evaluation and checkpointing left out."""
        self._interval_start, self._interval_steps = time.perf_counter(), 0

    def tick(self) -> None:
        self.step += 1
        self._interval_steps += 1

    def end_interval(self, images_per_step: int) -> float:
        """Images per second since start_interval, which are added to this process's share."""
        elapsed = time.perf_counter() - self._interval_start
        images = self._interval_steps * images_per_step
        self.train_s += elapsed
        self.images += images
        return images / max(elapsed, 1e-9)

    def entry(self) -> dict:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self.started,
            "steps": [self.first_step, self.step],
            "wall_s": round(self.wall_s(), 2),
            "compile_s": round(self.compile_s, 2),
            "train_s": round(self.train_s, 2),
            "images": self.images,
        }


def earlier_processes(workdir: str) -> list[dict]:
    """What the run's earlier processes recorded; [] when there were none (or the record is
    unreadable: timings are a report, never a reason to stop a run)."""
    try:
        with open(os.path.join(workdir, TIMING)) as f:
            return list(json.load(f)["processes"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def record(workdir: str, earlier: list[dict], clock: ProcessClock) -> None:
    write_json(os.path.join(workdir, TIMING), {"processes": [*earlier, clock.entry()]})


def run_timings(earlier: list[dict], clock: ProcessClock) -> dict:
    """The run card's timings: the whole run's wall time over all its processes, and this
    process's compile time and training throughput."""
    return {
        "wall_s": round(sum(p["wall_s"] for p in earlier) + clock.wall_s(), 2),
        "processes": len(earlier) + 1,
        "wall_s_this_process": round(clock.wall_s(), 2),
        "compile_s": round(clock.compile_s, 2),
        "train_s_this_process": round(clock.train_s, 2),
        "train_images_per_s": round(clock.images / max(clock.train_s, 1e-9), 1),
    }
