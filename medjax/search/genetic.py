"""The genetic algorithm's operators, as pure functions of a numpy Generator.

A genome is a tuple of choice indexes, one per gene; `sizes` holds each gene's number of
choices. Every draw comes from `generator(seed, generation)`, so a generation's population is
a function of the seed and the previous generation's results alone: a search killed and
started again breeds exactly the population it would have bred.
"""

import math

import numpy as np

# Fresh draws tried for a child that repeats an already evaluated genome before keeping it
# (a repeat costs nothing, the cache answers it, but it explores nothing either).
RETRIES = 10


def generator(seed: int, generation: int) -> np.random.Generator:
    return np.random.default_rng([seed, generation])


def random_genome(rng, sizes) -> tuple:
    return tuple(int(rng.integers(n)) for n in sizes)


def initial_population(rng, sizes, population: int) -> list[tuple]:
    """`population` random genomes, distinct while the space has that many."""
    out = []
    total = math.prod(sizes)
    for _ in range(population):
        child = random_genome(rng, sizes)
        for _ in range(RETRIES):
            if child not in out or len(set(out)) >= total:
                break
            child = random_genome(rng, sizes)
        out.append(child)
    return out


def tournament(rng, ranks, size: int) -> int:
    """Index of the fittest (lowest rank) of `size` candidates drawn without replacement."""
    drawn = rng.choice(len(ranks), size=size, replace=False)
    return int(min(drawn, key=lambda i: (ranks[i], i)))


def crossover(rng, a: tuple, b: tuple) -> tuple:
    """Uniform crossover: each gene from `a` or `b` with equal probability."""
    take_a = rng.random(len(a)) < 0.5
    return tuple(x if t else y for x, y, t in zip(a, b, take_a, strict=True))


def mutate(rng, genome: tuple, sizes, rate: float) -> tuple:
    """Each gene, with probability `rate`, moves to one of its other choices."""
    out = list(genome)
    hits = rng.random(len(genome)) < rate
    for g, (hit, n) in enumerate(zip(hits, sizes, strict=True)):
        if hit and n > 1:
            other = int(rng.integers(n - 1))
            out[g] = other + (other >= genome[g])  # uniform over the n - 1 other choices
    return tuple(out)


def rank(records, mode: str, max_params: int) -> list[int]:
    """Each record's rank (0 = fittest). Deb's constraint rule for the parameter budget:
    within budget beats over it; within budget, the better validation metric wins (fewer
    parameters break ties); over it, fewer parameters win. A failed run ranks last."""
    sign = -1.0 if mode == "max" else 1.0

    def key(i):
        r = records[i]
        if r.get("metric") is None:
            return (2, 0.0, 0, i)
        over = max_params > 0 and r["params"] > max_params
        if over:
            return (1, float(r["params"]), 0, i)
        return (0, sign * r["metric"], r["params"], i)

    order = sorted(range(len(records)), key=key)
    ranks = [0] * len(records)
    for position, i in enumerate(order):
        ranks[i] = position
    return ranks


def next_generation(rng, population, ranks, sizes, s, seen=frozenset()) -> list[tuple]:
    """The next population: the `s.elitism` fittest unchanged, then children of two
    tournament winners (crossover with probability `s.crossover`, then mutation). A child
    that repeats a genome in `seen` or in the new population is drawn again, up to RETRIES."""
    order = sorted(range(len(population)), key=lambda i: ranks[i])
    out = [population[i] for i in order[: s.elitism]]
    known = set(seen) | set(out)
    while len(out) < s.population:
        for _ in range(RETRIES + 1):
            a = population[tournament(rng, ranks, s.tournament)]
            b = population[tournament(rng, ranks, s.tournament)]
            child = crossover(rng, a, b) if rng.random() < s.crossover else a
            child = mutate(rng, child, sizes, s.mutation)
            if child not in known:
                break
        out.append(child)
        known.add(child)
    return out
