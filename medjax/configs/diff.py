"""One rule for whether two configs describe the same run, and how they differ.

Configs are compared in their JSON form, as `config.json` and every checkpoint store them
(tuples become lists), so a ConfigDict, its saved JSON and a sweep's resolved config compare
alike. The workdir guard, the checkpoint guard, the sweep's stale-run check and the check of
runs trained together all use it.
"""

import json

import ml_collections

from medjax.configs.loader import flatten

MISSING = "(none)"
# Keys that say how a run is watched or where it computes, not what it computes: a resumed run
# may turn MLflow on or move to another mesh, and a run from before they existed is still the
# same run.
WATCHING = ("log.", "mesh.", "sharding.")


def as_plain(config) -> dict:
    """The config as plain JSON data: what config.json holds."""
    if isinstance(config, ml_collections.ConfigDict):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(config, default=list))


def config_diff(old, new) -> dict[str, tuple]:
    """{key: (old value, new value)} for every dotted key whose value differs, the WATCHING
    keys aside; a key that one side lacks has the value MISSING there. A key `old` lacks and
    `new` holds at today's default is no difference: `old` was written by a medjax from
    before the key existed, and new keys default to what medjax did without them, so a
    finished run can be re-tested (and an unfinished one resumed) after an upgrade."""
    from medjax.configs.base import get_base_config

    a, b = flatten(as_plain(old)), flatten(as_plain(new))
    defaults = flatten(as_plain(get_base_config()))

    def differs(k):
        if k.startswith(WATCHING):
            return False
        if k not in a and k in b:
            return k not in defaults or b[k] != defaults[k]
        return a.get(k, MISSING) != b.get(k, MISSING)

    return {
        k: (a.get(k, MISSING), b.get(k, MISSING)) for k in sorted(a.keys() | b.keys()) if differs(k)
    }


def describe(diff: dict, limit: int = 5) -> str:
    """'optimizer.learning_rate: 0.001 -> 0.01; seed: 0 -> 1' (the first `limit` keys)."""
    parts = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(diff.items())[:limit]]
    return "; ".join(parts) + (f" (and {len(diff) - limit} more)" if len(diff) > limit else "")
