"""The largest training batch whose step compiles and runs on the devices: doubling until XLA
(or the allocator) reports that memory ran out."""

from medjax.errors import ConfigError

_OUT_OF_MEMORY = ("resource_exhausted", "resource exhausted", "out of memory")


def is_out_of_memory(error: BaseException) -> bool:
    """True for XLA's RESOURCE_EXHAUSTED, an allocator's out-of-memory and Python's
    MemoryError; any other failure is a real error and must not end the search quietly."""
    if isinstance(error, MemoryError):
        return True
    return any(text in str(error).lower() for text in _OUT_OF_MEMORY)


def find_max_batch(try_batch, start: int, cap: int, predict=None, log=print):
    """(largest batch, try_batch's result for it, [(batch, "fits" | "out of memory")]).

    try_batch(b) builds, compiles and runs one step at batch b and returns what the caller wants
    to keep (the compiled step, its state, its batch); it raises when memory runs out. Batches
    are start, 2 start, 4 start, ... up to cap. Compiling is the slow part on a GPU, so
    `predict(b, result)`, when given, may return the largest batch the first result's memory
    use says would fit: the search then jumps to the largest doubling of `start` below that,
    and falls back to plain doubling from the last batch that fitted if the jump runs out.
    The last result that fitted stays alive during the next try, so that a failure needs no
    second compile; its state and batch are small beside the activations a step's temporary
    buffers hold, which are free between steps."""
    if start < 1 or cap < start:
        raise ConfigError(
            f"--batch-size max: need 1 <= --batch-start ({start}) <= --batch-cap ({cap})"
        )
    best, kept, tried = None, None, []
    batch, jumped = start, False
    while batch <= cap:
        try:
            result = try_batch(batch)
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            tried.append((batch, "out of memory"))
            log(f"batch {batch}: out of memory ({str(e).splitlines()[0][:160]})")
            if not jumped:
                break
            batch, cap, jumped = 2 * best, batch - 1, False  # double from what fitted
            continue
        best, kept, jumped = batch, result, False
        tried.append((batch, "fits"))
        log(f"batch {batch}: fits")
        guess = predict(batch, result) if predict and len(tried) == 1 else None
        batch *= 2
        while guess and 2 * batch <= min(guess, cap):
            batch, jumped = 2 * batch, True
    if best is None:
        raise ConfigError(
            f"--batch-size max: even batch {start} ran out of device memory; give a smaller "
            f"--batch-start, a smaller --image-size or a smaller model"
        )
    return best, kept, tried


def predict_from_memory(
    limit_bytes: int | None, fixed_bytes: int, used_bytes: int, batch: int, margin: float = 0.85
) -> int | None:
    """The largest batch whose memory, extrapolated linearly from `used_bytes` at `batch`
    (`fixed_bytes` of it independent of the batch: the train state), stays under `margin` of
    the device's limit; None when the backend reports no limit."""
    if not limit_bytes or used_bytes <= fixed_bytes:
        return None
    per_example = (used_bytes - fixed_bytes) / batch
    return int((margin * limit_bytes - fixed_bytes) / per_example)
