"""What a finished search leaves: the best candidate's test metrics (read once, here),
DIR/best_config.py, a summary table and DIR/search.png (fitness by generation)."""

import json
import os

from medjax.search import space
from medjax.sweep import runner
from medjax.train import workdir as wd

BEST_CONFIG = "best_config.py"
PLOT = "search.png"
TEST_KEYS = ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity")

_TEMPLATE = '''"""The best architecture of the genetic search in {workdir}.

Its genome ({metric} on validation {value:.4f}, {params} parameters, run {run}) applied to the
search's base experiment; `python -m medjax.run --config {path} --workdir DIR` trains it again.
Written by `python -m medjax.search`; `arg` is ignored (the base's arguments are fixed below).
"""

from medjax.configs import apply_overrides, load_config

BASE = {base!r}
OVERRIDES = [
{overrides}]


def get_config(arg=None):
    config = load_config(BASE)
    apply_overrides(config, OVERRIDES)
    return config
'''


def best_test(workdir: str, best: dict) -> dict:
    """The best candidate's test metrics with their 95% intervals: the only test split the
    search reads, after selection is over."""
    with open(os.path.join(runner.run_dir(workdir, best["run"]), "results.json")) as f:
        test = json.load(f)["test"]
    ci = test.get("ci95", {})
    return {k: test[k] for k in TEST_KEYS if k in test} | {
        "ci95": {k: ci[k] for k in TEST_KEYS if k in ci}
    }


def write_best_config(workdir: str, plan, best: dict) -> str:
    path = os.path.join(workdir, BEST_CONFIG)
    pairs = list(plan.overrides) + space.overrides(plan.genes, tuple(best["genome"]))
    text = _TEMPLATE.format(
        workdir=os.path.abspath(workdir),
        metric=plan.select_metric,
        value=best["metric"],
        params=best["params"],
        run=best["run"],
        path=path,
        base=plan.spec,
        overrides="".join(f"    ({k!r}, {v!r}),\n" for k, v in pairs),
    )
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def short(values: dict) -> str:
    return " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in values.items())


def table(plan, state: dict, best: dict) -> str:
    """One row per candidate: generation, id, genome, parameters, validation metric."""
    lines = [f"| gen | candidate | genome | params | val {plan.select_metric} |", "|---" * 5 + "|"]
    for gen in state["generations"]:
        for rec in gen["candidates"]:
            metric = "failed" if rec["status"] == "failed" else f"{rec['metric']:.4f}"
            params = "" if rec["params"] is None else f"{rec['params']:,}"
            mark = " (best)" if rec["id"] == best["id"] else ""
            again = "" if rec["run"] == rec["id"] else f" = {rec['run']}"
            lines.append(
                f"| {rec['generation']} | {rec['id']}{again}{mark} | {short(rec['values'])} "
                f"| {params} | {metric} |"
            )
    return "\n".join(lines)


def plot(plan, state: dict, path: str) -> str:
    """Each candidate's validation metric by generation, and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    better = max if plan.select_mode == "max" else min
    fig, ax = plt.subplots(figsize=(5, 3.5))
    best_so_far, xs = [], []
    for gen in state["generations"]:
        g = gen["generation"]
        scores = [r["metric"] for r in gen["candidates"] if r["metric"] is not None]
        ax.scatter([g] * len(scores), scores, color="tab:blue", alpha=0.6, s=18)
        if scores:
            best_so_far.append(better(scores + best_so_far[-1:]))
            xs.append(g)
    ax.plot(xs, best_so_far, color="tab:red", marker="o", label="best so far")
    ax.set_xlabel("generation")
    ax.set_ylabel(f"validation {plan.select_metric}")
    ax.set_xticks(range(len(state["generations"])))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def finish(plan, state: dict, workdir: str, ranked: list) -> dict:
    """Record the best candidate and its test metrics in search.json; write best_config.py
    and search.png. Returns the best record."""
    best = next((r for r in ranked if r["status"] == "finished"), None)
    if best is None:
        return None
    best = {k: best[k] for k in ("id", "run", "genome", "values", "metric", "params")}
    best["test"] = best_test(workdir, best)
    state["best"] = best
    wd.write_json(os.path.join(workdir, "search.json"), state)
    write_best_config(workdir, plan, best)
    plot(plan, state, os.path.join(workdir, PLOT))
    return best
