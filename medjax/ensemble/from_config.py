"""An ensemble as an experiment: `python -m medjax.run --config ENSEMBLE.py --workdir D` trains
the members its config names that are not finished, then combines them (medjax.ensemble.output).

`config.ensemble.members` holds one entry per member: a config spec with optional overrides,
"experiments/review/plain_cnn.py:seed=1 --config.model.widths=(8,16)", trained into
<members_dir>/<i>-<its model name> (members_dir: config.ensemble.members_dir, or D/members), or
the path of a finished workdir, used as it is. As in a sweep (medjax.sweep.runner), a member
with results is skipped, one with a checkpoint resumes exactly, and one whose workdir holds
another config is refused unless --overwrite, all checked before anything trains.
"""

import json
import os
import shlex
from dataclasses import dataclass

from medjax.cli import split_overrides
from medjax.configs import apply_overrides, config_diff, describe, load_config
from medjax.errors import ConfigError, WorkdirError
from medjax.report.experiment import describe as describe_experiment
from medjax.sweep.runner import compilation_cache, status_of
from medjax.train import workdir as wd

MEMBERS = "members"


@dataclass
class Plan:
    """One member: its workdir, and for a trained member its config and experiment record."""

    spec: str
    workdir: str
    config: object = None  # None: a finished workdir named in the config
    record: dict | None = None
    rerun: bool = False  # its workdir holds another config and --overwrite was given


def _is_config_spec(token: str) -> bool:
    return token.endswith(".py") or ".py:" in token


def parse_member(spec: str) -> tuple[str, list]:
    """(config spec or workdir, overrides) of one config.ensemble.members entry."""
    tokens = shlex.split(spec)
    if not tokens:
        raise ConfigError("config.ensemble.members has an empty entry; remove it")
    head, rest = tokens[0], tokens[1:]
    rest, overrides = split_overrides(rest)
    if rest or (overrides and not _is_config_spec(head)):
        raise ConfigError(
            f"ensemble member {spec!r}: only --config.KEY=VALUE overrides may follow a config "
            f"file (not {' '.join(rest) or 'overrides after a workdir'}); write members as "
            f"'experiments/NAME.py[:args] [--config.KEY=VALUE ...]' or a finished workdir"
        )
    if not _is_config_spec(head) and not os.path.isdir(head):
        raise ConfigError(
            f"ensemble member {spec!r} is neither a config file (experiments/NAME.py[:args]) "
            f"nor an existing workdir"
        )
    return head, overrides


def members_dir(config, workdir: str) -> str:
    return config.ensemble.members_dir or os.path.join(workdir, MEMBERS)


def plan(config, workdir: str, overwrite: bool = False) -> list[Plan]:
    """Every member's plan, each member config loaded and validated and each workdir checked,
    before anything is trained or written."""
    from medjax.train.validate import validate

    if len(config.ensemble.members) < 2:
        raise ConfigError(
            f"config.ensemble.members names {len(config.ensemble.members)} member(s); an "
            f"ensemble needs at least 2 (config specs or finished workdirs)"
        )
    plans = []
    for i, spec in enumerate(config.ensemble.members):
        head, overrides = parse_member(spec)
        if not _is_config_spec(head):
            plans.append(Plan(spec, head))
            continue
        member = load_config(head)
        apply_overrides(member, overrides)
        if member.ensemble.members:
            raise ConfigError(
                f"ensemble member {spec!r} is itself an ensemble config; train it with its own "
                f"command and name its finished workdir as the member"
            )
        validate(member)
        path = os.path.join(members_dir(config, workdir), f"{i}-{member.model.name}")
        rerun = _stale(path, member, spec, overwrite)
        plans.append(Plan(spec, path, member, describe_experiment(head, overrides), rerun))
    return plans


def _stale(path: str, member, spec: str, overwrite: bool) -> bool:
    recorded = os.path.join(path, "config.json")
    if not os.path.exists(recorded):
        return False
    with open(recorded) as f:
        diff = config_diff(json.load(f), member)
    if diff and not overwrite:
        raise WorkdirError(
            f"{path} holds another config than ensemble member {spec!r} gives "
            f"({describe(diff, 3)}); choose another --workdir, or pass --overwrite to train "
            f"that member again"
        )
    return bool(diff)


def train_members(plans: list[Plan], cache_dir: str) -> None:
    """Train each unfinished member (resuming from its checkpoint); finished ones are skipped."""
    todo = [p for p in plans if p.config is not None]
    if not todo:
        return
    from medjax.train import loop  # imports JAX

    with compilation_cache(cache_dir):
        for p in todo:
            status = status_of(p.workdir)
            if status == "finished" and not p.rerun:
                print(f"ensemble: member {p.workdir} is finished; skipped")
                continue
            verb = "resumes" if status == "interrupted" and not p.rerun else "starts"
            print(f"ensemble: member {p.workdir} {verb} ({p.spec})")
            loop.train_and_evaluate(p.config, p.workdir, p.rerun, experiment=p.record)


def run_ensemble(config, workdir: str, overwrite: bool = False, experiment=None) -> dict:
    """Train the missing members of the ensemble `config` and combine them into `workdir`;
    returns the ensemble's results."""
    from medjax.ensemble.combine import COMBINERS
    from medjax.ensemble.output import combine_workdirs

    COMBINERS.get(config.ensemble.method)  # the ensemble's own keys; members are validated below
    plans = plan(config, workdir, overwrite)
    wd.make(workdir)
    with wd.Lock(workdir):
        wd.claim(workdir, config, overwrite)
        if experiment is not None:
            wd.write_json(os.path.join(workdir, "experiment.json"), experiment)
    train_members(plans, members_dir(config, workdir))
    return combine_workdirs(
        [p.workdir for p in plans],
        config.ensemble.method,
        workdir,
        bootstrap=config.eval.bootstrap_samples,
        seed=config.seed,
        ece_bins=config.eval.ece_bins,
    )
