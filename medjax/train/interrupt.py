"""Ctrl-C and SIGTERM during training: finish the step, save, then stop.

A signal can arrive at any instant, also between a compiled step's return and the assignment
of its result, when the old state's buffers are already donated. Raising there would leave
nothing consistent to save, so the handlers only record the request and the loop acts on it
at the next step boundary. A second signal stops at once, without saving: the last checkpoint
is still intact, so even then nothing before it is lost.
"""

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by a signal handler; read by the training loop after each step."""

    def __init__(self):
        self.signal_name: str | None = None

    def __bool__(self) -> bool:
        return self.signal_name is not None


@contextlib.contextmanager
def deferred_signals():
    """Yields a StopRequest that SIGINT or SIGTERM sets; outside the main thread (where Python
    cannot take signals) it is never set."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}

    def handle(signum, frame):
        if request:
            for s, h in previous.items():
                signal.signal(s, h)
            raise KeyboardInterrupt
        request.signal_name = signal.Signals(signum).name
        print(
            f"\n{request.signal_name}: saving a checkpoint after this step, then stopping "
            f"(send it again to stop at once, losing the steps since the last checkpoint)",
            flush=True,
        )

    for s in SIGNALS:
        signal.signal(s, handle)
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
