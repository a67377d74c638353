"""User-facing errors.

Every failure a user can cause (a bad config, a bad data file, a diverging run) is raised as a
`MedjaxError` whose message names the problem and the fix. The command-line entry points print
that message alone, without a traceback from deep inside JAX, and exit with status 2.
"""


class MedjaxError(Exception):
    """A problem the user can fix; the message says how."""


class ConfigError(MedjaxError):
    """The experiment config is invalid."""


class DataError(MedjaxError):
    """A data file or its contents are invalid."""


class TrainingError(MedjaxError):
    """Training cannot continue (for example the loss diverged)."""


class WorkdirError(MedjaxError):
    """The working directory cannot be used for this run."""


class Interrupted(TrainingError):
    """Training stopped on a signal (Ctrl-C, SIGTERM from a scheduler) after saving a
    checkpoint; running the same command again resumes exactly."""

    def __init__(self, message: str, signal_name: str):
        super().__init__(message)
        self.signal_name = signal_name


# errno -> what to tell the user; tensorstore (under Orbax) reports these only in its message.
DISK_ERRORS = {
    28: "no space left on the device",
    122: "the disk quota is exceeded",
    30: "the file system is read-only",
    13: "permission denied",
}


def disk_error(error: BaseException) -> str | None:
    """What went wrong on disk, if `error` (or its cause) is a full, read-only or forbidden
    file system; None for anything else."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_ERRORS:
            return DISK_ERRORS[error.errno]
        for code, reason in DISK_ERRORS.items():
            if f"os_error_code='{code}'" in str(error):
                return reason
        error = error.__cause__ or error.__context__
    return None
