"""Output-level ensembles of the review recipe: each member is the plain CNN's config
(experiments/review/plain_cnn.py) with the same `:seed`, `:data` and `:runlocal`, changed by a
few overrides (another model, widths, activation), so members differ in that alone.
"""

import os
import shlex

from medjax.configs.review import review_config

# `:runlocal` overrides of large members: a tiny CNN, so a smoke run of an ensemble of large
# networks takes seconds (it tests the ensemble, not the networks)
TINY = {"model.name": "cnn", "model.widths": (4, 8)}
TINY_ACTS = ("relu", "gelu", "elu")


def member_spec(config_file: str, arg: str, overrides: dict) -> str:
    """'FILE:ARG --config.KEY=VALUE ...', the form config.ensemble.members takes."""
    flags = [shlex.quote(f"--config.{k}={v}") for k, v in overrides.items()]
    return " ".join([f"{config_file}:{arg}", *flags])


def ensemble_config(arg, here: str, members: list[dict], runlocal_members=None, **extra_args):
    """(unlocked ConfigDict, parsed args) of an ensemble of `members` (override dicts of the
    plain recipe in `here`/plain_cnn.py) combined by `:method=` (soft, hard, stacking).
    `runlocal_members` (e.g. TINY) replace every member's network under `:runlocal`, with
    activations that differ by member, so a smoke run of large networks takes seconds."""
    c, a = review_config(arg, method="soft", **extra_args)
    plain = os.path.join(here, "plain_cnn.py")
    member_arg = f"seed={a.seed},data={a.data}" + (",runlocal" if a.runlocal else "")
    specs = []
    for i, overrides in enumerate(members):
        if a.runlocal and runlocal_members:  # stand-ins that still differ from each other
            overrides = {**overrides, **runlocal_members, "model.activation": TINY_ACTS[i % 3]}
        specs.append(member_spec(plain, member_arg, overrides))
    c.ensemble.members = tuple(specs)
    c.ensemble.method = a.method
    return c, a
