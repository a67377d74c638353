"""The genetic architecture search (medjax.search, experiments/review/search_cnn.py): its
operators, resume after a kill, best_config.py, bad search spaces, and one real tiny search."""

import json
import os
import types
import zlib

import numpy as np
import pytest

from medjax.configs import config_diff, load_config
from medjax.errors import ConfigError
from medjax.search import driver, genetic, outputs
from medjax.sweep import runner

from .conftest import ROOT

SPEC = str(ROOT / "experiments/review/search_cnn.py") + ":runlocal,data=phantom"
SIZES = [5, 2, 2, 2, 3, 3, 3]
GA = types.SimpleNamespace(population=6, tournament=2, crossover=0.9, mutation=0.3, elitism=1)


def test_operators_are_deterministic_and_stay_in_the_space():
    def draw(seed):
        rng = genetic.generator(seed, 1)
        pop = genetic.initial_population(rng, SIZES, 6)
        ranks = list(range(6))
        return pop, genetic.next_generation(rng, pop, ranks, SIZES, GA)

    first, again, other = draw(0), draw(0), draw(1)
    assert first == again and first != other
    pop, children = first
    assert len(set(pop)) == 6 and len(children) == 6
    assert children[0] == pop[0]  # elitism: the rank-0 genome survives unchanged
    for genome in pop + children:
        assert all(0 <= i < n for i, n in zip(genome, SIZES, strict=True))


def test_crossover_takes_each_gene_from_a_parent_and_mutation_changes_by_rate():
    rng = np.random.default_rng(0)
    a, b = (0, 0, 0, 0, 0, 0, 0), (4, 1, 1, 1, 2, 2, 2)
    children = [genetic.crossover(rng, a, b) for _ in range(50)]
    assert all(c[g] in (a[g], b[g]) for c in children for g in range(7))
    assert {c[0] for c in children} == {0, 4}  # both parents contribute
    assert genetic.mutate(rng, b, SIZES, 0.0) == b
    moved = genetic.mutate(rng, b, SIZES, 1.0)  # every gene moves to another choice
    assert all(m != x and 0 <= m < n for m, x, n in zip(moved, b, SIZES, strict=True))


def test_tournament_and_rank_prefer_the_fittest_within_the_budget():
    rng = np.random.default_rng(0)
    assert genetic.tournament(rng, [3, 0, 2, 1], size=4) == 1  # all drawn: the best wins
    records = [
        {"metric": 0.9, "params": 500},  # over a 100-parameter budget
        {"metric": 0.7, "params": 50},
        {"metric": None, "params": None},  # failed
        {"metric": 0.8, "params": 90},
    ]
    assert genetic.rank(records, "max", 0) == [0, 2, 3, 1]
    assert genetic.rank(records, "max", 100) == [2, 1, 3, 0]
    assert genetic.rank(records, "min", 0) == [2, 0, 3, 1]


def fake_trainer(calls):
    """Writes what a finished run leaves, with a metric that is a function of the genome."""

    def train(plan, workdir, runs, overwrite):
        for run in runs:
            calls.append(run.name)
            path = runner.run_dir(workdir, run.name)
            os.makedirs(path, exist_ok=True)
            key = zlib.crc32(json.dumps(run.texts, sort_keys=True).encode())
            metric = 0.5 + (key % 1000) / 2000
            test = {"auc": metric - 0.1, "accuracy": 0.5, "ci95": {"auc": [0.1, 0.9]}}
            with open(os.path.join(path, "results.json"), "w") as f:
                json.dump({"val": {"auc": metric}, "test": test}, f)
            with open(os.path.join(path, "run_card.json"), "w") as f:
                json.dump({"model": {"parameters": 1000 + key % 97}}, f)

    return train


def _search_json(workdir):
    with open(os.path.join(workdir, driver.STATE)) as f:
        return json.load(f)


def test_search_killed_after_some_candidates_resumes_to_the_same_result(tmp_path):
    plan = driver.make_plan(SPEC, [("search.generations", "3"), ("search.population", "4")])
    calls = []
    whole, done = driver.search(plan, str(tmp_path / "a"), train=fake_trainer(calls))
    assert done and len(whole["generations"]) == 3
    assert len(calls) == len(set(calls))  # a genome is trained once
    resumed, starts = [], 0
    while True:  # killed after every 3 candidates, started again with the same command
        _, done = driver.search(plan, str(tmp_path / "b"), fake_trainer(resumed), max_runs=3)
        starts += 1
        if done:
            break
    assert starts > 2 and resumed == calls
    assert _search_json(tmp_path / "a") == _search_json(tmp_path / "b")
    # More generations extend the finished search; nothing already evaluated is retrained.
    more = driver.make_plan(SPEC, [("search.generations", "4"), ("search.population", "4")])
    state, done = driver.search(more, str(tmp_path / "a"), train=fake_trainer(calls))
    assert done and len(state["generations"]) == 4 and len(calls) == len(set(calls))


def test_best_config_loads_and_is_the_best_genome(tmp_path):
    plan = driver.make_plan(SPEC, [("search.population", "4")])
    state, _ = driver.search(plan, str(tmp_path), train=fake_trainer([]))
    ranked = driver.ranked(plan, state)
    best = outputs.finish(plan, state, str(tmp_path), ranked)
    metrics = [r["metric"] for g in state["generations"] for r in g["candidates"]]
    assert best["metric"] == max(metrics) and best["test"]["auc"] == best["metric"] - 0.1
    assert _search_json(tmp_path)["best"]["id"] == best["id"]
    config = load_config(str(tmp_path / outputs.BEST_CONFIG))
    for key, value in best["values"].items():
        section, leaf = key.split(".")
        got = config[section][leaf]
        assert got == (tuple(value) if isinstance(value, list | tuple) else value)
    assert not config_diff(config.to_dict(), plan.candidate_config(tuple(best["genome"])))
    assert os.path.exists(tmp_path / outputs.PLOT)
    assert "(best)" in outputs.table(plan, state, best)


@pytest.mark.parametrize(
    "override, message",
    [
        (("search.space", "('model.kernel_size=[]',)"), "empty choice list"),
        (("search.space", "('model.kernal_size=[3, 5]',)"), "not a config key"),
        (("search.space", "('model.kernel_size=[3, \"big\"]',)"), "model.kernel_size='big'"),
        (("search.space", '(\'model.activation=["relu", "relux"]\',)'), "relux"),
        (("search.population", "1"), "at least 2"),
    ],
)
def test_bad_search_settings_fail_before_anything_is_written(tmp_path, override, message):
    from medjax.search.__main__ import main

    key, value = override
    with pytest.raises(ConfigError, match=message):
        main(["--config", SPEC, "--workdir", str(tmp_path / "w"), f"--config.{key}={value}"])
    assert not os.path.exists(tmp_path / "w")


def test_a_tiny_search_runs_end_to_end(tmp_path, capsys):
    from medjax.search.__main__ import main

    workdir = str(tmp_path / "search")
    space = "('model.widths=[(4,), (4, 8)]', 'model.kernel_size=[3]')"
    args = ["--config", SPEC, "--workdir", workdir, "--generations", "2", "--population", "2"]
    main([*args, f"--config.search.space={space}", "--config.train.num_steps=4"])
    out = capsys.readouterr().out
    state = _search_json(workdir)
    assert "search: best" in out and "test AUC" in out
    assert sorted(os.listdir(os.path.join(workdir, "runs"))) == ["gen0-c00", "gen0-c01"]
    assert {r["status"] for g in state["generations"] for r in g["candidates"]} == {"finished"}
    best = load_config(os.path.join(workdir, outputs.BEST_CONFIG))
    assert best.model.widths == tuple(state["best"]["values"]["model.widths"])
    assert best.train.num_steps == 4
