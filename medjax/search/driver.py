"""The search loop: breed a generation, train its new candidates through the sweep machinery,
read their validation metric, repeat; DIR/search.json holds the whole state.

Each candidate is a run in DIR/runs/gen<g>-c<i> (medjax.sweep.runner's layout), so the rules of
a run hold: a finished one is read, not retrained; an interrupted one resumes from its
checkpoint. search.json is rewritten atomically when a generation is bred and when its
candidates' results are in, so a search killed at any instant and started again with the
same command breeds the same populations and reaches the same results. A genome already
evaluated (in this or an earlier generation) is not trained again: its record points to the
first run of it.
"""

import dataclasses
import json
import os

from medjax.configs import apply_overrides
from medjax.configs.loader import import_experiment
from medjax.errors import ConfigError, WorkdirError
from medjax.search import genetic, space
from medjax.sweep import runner
from medjax.sweep.grid import PlannedRun, Sweep
from medjax.train import workdir as wd

STATE = "search.json"
SEARCH_PREFIX = "search."
# Settings that may change between starts of one search: more generations extend it.
EXTENDABLE = ("generations",)


@dataclasses.dataclass
class Plan:
    """What is searched: the base experiment, the genes, the GA settings."""

    spec: str  # experiments/NAME.py[:args], absolute
    overrides: list  # the command line's (key, text) pairs every candidate gets
    search: object  # config.search with the command line's search.* overrides
    genes: tuple
    select_metric: str
    select_mode: str
    module: object
    arg: object

    @property
    def sizes(self) -> list[int]:
        return [len(g.choices) for g in self.genes]

    def base_config(self):
        config = self.module.get_config(self.arg)
        config.lock()
        apply_overrides(config, self.overrides)
        return config

    def candidate_config(self, genome):
        from medjax.train.validate import validate

        config = self.base_config()
        apply_overrides(config, space.overrides(self.genes, genome))
        validate(config)
        return config

    def identity(self) -> dict:
        """What must match for a workdir's search.json to be this search's."""
        s = {k: v for k, v in self.search.to_dict().items() if k not in EXTENDABLE}
        s["space"] = list(s["space"])
        return {"config": self.spec, "overrides": [list(o) for o in self.overrides], "search": s}


def make_plan(spec: str, overrides) -> Plan:
    """Load and check everything about the search before a file is read or written: the
    space, the GA settings, and every choice of every gene on its own."""
    module, path, arg = import_experiment(spec)
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"config file {path!r} has no get_config(arg=None) function")
    config = module.get_config(arg)
    config.lock()
    apply_overrides(config, list(overrides))
    base = [(k, v) for k, v in overrides if not k.startswith(SEARCH_PREFIX)]
    plan = Plan(
        runner.absolute_spec(spec),
        base,
        config.search,
        space.parse_space(config),
        config.train.select_metric,
        config.train.select_mode,
        module,
        arg,
    )
    space.check_search(plan.search)
    space.check_choices(plan.genes, plan.base_config)
    return plan


def load_state(workdir: str, plan: Plan) -> dict:
    path = os.path.join(workdir, STATE)
    if not os.path.exists(path):
        return {**plan.identity(), "generations": []}
    with open(path) as f:
        state = json.load(f)
    mine = plan.identity()
    for key, value in mine.items():
        if state.get(key) != value:
            raise WorkdirError(
                f"{path} holds another search ({key} differs: {state.get(key)!r} there, "
                f"{value!r} now); choose another --workdir, or rerun the search as it was "
                f"(only search.generations may grow)"
            )
    return state


def save_state(workdir: str, state: dict) -> None:
    wd.write_json(os.path.join(workdir, STATE), state)


def _record(plan: Plan, generation: int, index: int, genome: tuple) -> dict:
    return {
        "id": f"gen{generation}-c{index:02d}",
        "generation": generation,
        "genome": list(genome),
        "values": space.values(plan.genes, genome),
        "run": None,
        "status": "pending",
        "metric": None,
        "params": None,
    }


def evaluated(state: dict) -> dict:
    """genome -> the record that evaluated it first (finished or failed)."""
    out = {}
    for gen in state["generations"]:
        for rec in gen["candidates"]:
            if rec["status"] != "pending":
                out.setdefault(tuple(rec["genome"]), rec)
    return out


def breed(plan: Plan, state: dict, g: int) -> list[tuple]:
    """Generation g's genomes: random for g = 0, else bred from generation g - 1."""
    rng = genetic.generator(plan.search.seed, g)
    if g == 0:
        return genetic.initial_population(rng, plan.sizes, plan.search.population)
    previous = state["generations"][g - 1]["candidates"]
    population = [tuple(r["genome"]) for r in previous]
    ranks = genetic.rank(previous, plan.select_mode, plan.search.max_params)
    return genetic.next_generation(
        rng, population, ranks, plan.sizes, plan.search, seen=set(evaluated(state))
    )


def fill_from_cache(state: dict, candidates: list) -> None:
    cache = evaluated(state)
    for rec in candidates:
        first = cache.get(tuple(rec["genome"]))
        if rec["status"] == "pending" and first is not None:
            rec.update({k: first[k] for k in ("run", "status", "metric", "params")})
            if "error" in first:
                rec["error"] = first["error"]


def read_result(plan: Plan, path: str) -> dict:
    """The candidate's validation metric and parameter count; the test split is not read."""
    status = runner.status_of(path)
    if status == "failed":
        with open(os.path.join(path, runner.FAILED)) as f:
            return {"status": "failed", "error": json.load(f)["error"]}
    if status != "finished":
        return {"status": "pending"}
    with open(os.path.join(path, "results.json")) as f:
        metric = json.load(f)["val"][plan.select_metric]
    with open(os.path.join(path, "run_card.json")) as f:
        params = json.load(f)["model"]["parameters"]
    return {"status": "finished", "metric": float(metric), "params": int(params)}


def train_candidates(plan: Plan, workdir: str, runs: list, overwrite: bool, parallel: int):
    """Train `runs` (PlannedRuns) as a sweep would: in this process, or `parallel` at once."""
    from medjax.sweep import modes

    sweep = Sweep(plan.spec, plan.overrides, runs, (), plan.select_metric, plan.select_mode)
    rerun = runner.stale_runs(sweep, workdir, overwrite)
    if parallel:
        modes.run_parallel(sweep, workdir, runs, rerun, parallel)
    else:
        modes.run_sequential(sweep, workdir, runs, rerun)


def run_generation(plan, state, workdir, g, budget, train, overwrite) -> int:
    """Train what generation g still lacks, at most `budget` runs (None: no limit); returns
    the runs started. Its candidates' records are filled in and search.json written."""
    candidates = state["generations"][g]["candidates"]
    fill_from_cache(state, candidates)
    save_state(workdir, state)  # search.json shows the repeats as answered while the rest train
    todo, planned = {}, []
    for rec in candidates:
        if rec["status"] == "pending":
            todo.setdefault(tuple(rec["genome"]), rec["id"])  # duplicates: the first one runs
    for genome, name in todo.items():
        if budget is not None and len(planned) >= budget:
            break
        if runner.status_of(runner.run_dir(workdir, name)) != "finished":
            texts = dict(space.overrides(plan.genes, genome))
            planned.append(PlannedRun(name, texts, plan.candidate_config(genome)))
    if planned:
        train(plan, workdir, planned, overwrite)
    for genome, name in todo.items():
        result = read_result(plan, runner.run_dir(workdir, name))
        if result["status"] != "pending":
            for rec in candidates:
                if tuple(rec["genome"]) == genome and rec["status"] == "pending":
                    rec.update(result, run=name)
    save_state(workdir, state)
    return len(planned)


def search(plan, workdir, train=None, max_runs=None, overwrite=False, parallel=0):
    """Run (or resume) the search in `workdir`; returns (state, whether every generation is
    evaluated). `max_runs` stops after training that many runs (state saved; the same call
    again goes on). `train(plan, workdir, runs, overwrite)` trains PlannedRuns (default: the
    sweep machinery, `parallel` runs at a time when > 0)."""
    if train is None:

        def train(p, w, runs, o):
            train_candidates(p, w, runs, o, parallel)

    state = load_state(workdir, plan)
    wd.make(workdir)
    with wd.Lock(workdir):
        budget = max_runs
        for g in range(plan.search.generations):
            if g == len(state["generations"]):
                genomes = breed(plan, state, g)
                records = [_record(plan, g, i, gen) for i, gen in enumerate(genomes)]
                state["generations"].append({"generation": g, "candidates": records})
                save_state(workdir, state)
            started = run_generation(plan, state, workdir, g, budget, train, overwrite)
            if budget is not None:
                budget -= started
            if any(r["status"] == "pending" for r in state["generations"][g]["candidates"]):
                return state, False  # stopped by max_runs: the next start goes on from here
    return state, True


def ranked(plan: Plan, state: dict) -> list[dict]:
    """Every evaluated genome once (its first record), fittest first."""
    records = list(evaluated(state).values())
    ranks = genetic.rank(records, plan.select_mode, plan.search.max_params)
    return [r for _, r in sorted(zip(ranks, records, strict=True), key=lambda x: x[0])]
