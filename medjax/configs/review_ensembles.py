"""Output-level ensembles of the review recipe: each member is the plain CNN's config
(experiments/review/plain_cnn.py) with the same `:seed`, `:data` and `:runlocal`, changed by a
few overrides (another model, widths, activation), so members differ in that alone.
"""

import os
import shlex

from medjax.configs.review import review_config


def member_spec(config_file: str, arg: str, overrides: dict) -> str:
    """'FILE:ARG --config.KEY=VALUE ...', the form config.ensemble.members takes."""
    flags = [shlex.quote(f"--config.{k}={v}") for k, v in overrides.items()]
    return " ".join([f"{config_file}:{arg}", *flags])


def ensemble_config(arg, here: str, members: list[dict], runlocal_members=None, **extra_args):
    """(unlocked ConfigDict, parsed args) of an ensemble of `members` (override dicts of the
    plain recipe in `here`/plain_cnn.py) combined by `:method=` (soft, hard, stacking).
    `runlocal_members` are overrides every member also gets under `:runlocal` (to shrink large
    networks to a seconds-long smoke run)."""
    c, a = review_config(arg, method="soft", **extra_args)
    plain = os.path.join(here, "plain_cnn.py")
    member_arg = f"seed={a.seed},data={a.data}" + (",runlocal" if a.runlocal else "")
    extra = runlocal_members or {} if a.runlocal else {}
    c.ensemble.members = tuple(member_spec(plain, member_arg, {**m, **extra}) for m in members)
    c.ensemble.method = a.method
    return c, a
