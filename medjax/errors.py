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
