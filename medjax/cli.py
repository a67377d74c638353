"""Shared command-line plumbing: `--config file.py[:args]` plus `--config.a.b=v` overrides."""

import argparse
import os
import sys

from medjax.configs import apply_overrides, load_config
from medjax.errors import ConfigError, MedjaxError, disk_error


def split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Separate `--config.a.b=v` / `--config.a.b v` from the other arguments."""
    rest, overrides, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            key, eq, value = arg[len("--config.") :].partition("=")
            if not eq:
                if i + 1 >= len(argv):
                    raise ConfigError(f"{arg} needs a value: {arg}=VALUE")
                value, i = argv[i + 1], i + 1
            overrides.append((key, value))
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def config_from_args(args, overrides):
    config = load_config(args.config)
    apply_overrides(config, overrides)
    return config


def main_guard(fn, argv=None):
    """Run `fn(argv)`, turning user-facing errors into one message and exit status 2 (130 or
    143 after Ctrl-C or SIGTERM), without a traceback from deep inside a library."""
    try:
        return fn(sys.argv[1:] if argv is None else argv)
    except MedjaxError as e:
        print(f"medjax: error: {e}", file=sys.stderr)
        codes = {"SIGINT": 130, "SIGTERM": 143}  # what shells and schedulers expect
        raise SystemExit(codes.get(getattr(e, "signal_name", ""), 2)) from None
    except KeyboardInterrupt:
        print("medjax: interrupted; nothing past the last checkpoint was saved", file=sys.stderr)
        raise SystemExit(130) from None
    except OSError as e:
        reason = disk_error(e)
        if reason is None:
            raise
        print(
            f"medjax: error: {reason} ({e.filename or e}); free space or fix the folder's "
            f"permissions, then run the same command again: a training run resumes from its "
            f"last checkpoint",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description,
        epilog="Any config key can be overridden with --config.KEY=VALUE, "
        "e.g. --config.optimizer.name=sgd",
    )
    parser.add_argument("--config", required=True, help="experiments/NAME.py[:args]")
    return parser


def at_least(low: int):
    """An argparse type: an integer >= `low` (argparse then names the flag in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    return parse


def output_file(path: str, extensions) -> str:
    """`path` if a file can be written there with one of `extensions`; else a ConfigError
    saying why, before any work is done."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"{path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{path}: the folder {folder} is not writable; choose another")
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if ext not in extensions:
        raise ConfigError(
            f"{path}: unknown image type {ext or '(no extension)'!r}; end the name with one of "
            f"{', '.join('.' + e for e in sorted(extensions))}"
        )
    return path
