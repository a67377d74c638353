"""A search space read from `config.search.space`, checked before anything runs.

Each entry is one gene, `"KEY=[choice, ...]"` with KEY a config key and the choices Python
literals, e.g. `"model.widths=[(16, 32), (16, 32, 64)]"`. A genome is one choice index per
gene; the candidate it stands for is the base config with each gene's key set to its choice.
"""

import ast
import dataclasses

from medjax.configs import apply_overrides, flatten
from medjax.errors import ConfigError
from medjax.registry import suggest
from medjax.sweep.grid import as_text


@dataclasses.dataclass(frozen=True)
class Gene:
    key: str
    choices: tuple


def parse_entry(entry: str) -> Gene:
    """`"KEY=[a, b]"` -> Gene(KEY, (a, b)); any other form is a ConfigError."""
    key, eq, raw = str(entry).partition("=")
    key = key.strip()
    example = 'e.g. "model.kernel_size=[3, 5]"'
    if not eq or not key:
        raise ConfigError(f"search.space entry {entry!r} is not KEY=[choice, ...]; write {example}")
    try:
        choices = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        raise ConfigError(
            f"search.space entry {entry!r}: the choices are not a Python list of literals; "
            f"write {example} (quote names: ['relu', 'gelu'])"
        ) from None
    if not isinstance(choices, list | tuple):
        raise ConfigError(f"search.space entry {entry!r}: the choices must be a list; {example}")
    if not choices:
        raise ConfigError(
            f"search.space entry {entry!r} has an empty choice list; give at least one value, "
            f"or remove the entry to keep the config's own {key}"
        )
    return Gene(key, tuple(choices))


def parse_space(config) -> tuple[Gene, ...]:
    """The genes of `config.search.space`, each key a real config key, none twice."""
    genes = tuple(parse_entry(e) for e in config.search.space)
    if not genes:
        raise ConfigError(
            'search.space is empty: list the genes to search, e.g. search.space = ("model.'
            'kernel_size=[3, 5]", "model.widths=[(16, 32), (16, 32, 64)]")'
        )
    valid = {k for k in flatten(config) if not k.startswith("search.")}
    seen = set()
    for gene in genes:
        if gene.key not in valid:
            raise ConfigError(
                f"search.space gene {gene.key!r} is not a config key a candidate can set."
                f"{suggest(gene.key, valid)} Genes name keys like model.widths or "
                f"optimizer.learning_rate (search.* keys cannot be searched)"
            )
        if gene.key in seen:
            raise ConfigError(f"search.space names {gene.key!r} twice; merge its choices")
        seen.add(gene.key)
    return genes


def overrides(genes, genome) -> list[tuple[str, str]]:
    """The `--config.KEY=TEXT` overrides that turn the base config into this genome's."""
    return [(g.key, as_text(g.choices[i])) for g, i in zip(genes, genome, strict=True)]


def values(genes, genome) -> dict:
    """{key: chosen value}, JSON-friendly (tuples become lists when written)."""
    return {g.key: g.choices[i] for g, i in zip(genes, genome, strict=True)}


def check_choices(genes, make_config) -> None:
    """Every choice on its own gives a valid config: the key's type, a name a registry knows
    (medjax.train.validate). `make_config()` returns a fresh, locked base config."""
    from medjax.train.validate import validate  # imports JAX: after the cheap checks

    for gene in genes:
        for choice in gene.choices:
            config = make_config()
            try:
                apply_overrides(config, [(gene.key, as_text(choice))])
                validate(config)
            except ConfigError as e:
                raise ConfigError(f"search.space choice {gene.key}={choice!r}: {e}") from None


def check_search(s) -> None:
    """The GA's own settings (config.search), besides the space."""
    rules = [
        (s.population >= 2, f"search.population={s.population}: a GA needs at least 2"),
        (s.generations >= 1, f"search.generations={s.generations}: give at least 1"),
        (
            1 <= s.tournament <= s.population,
            f"search.tournament={s.tournament}: give 1 to search.population ({s.population})",
        ),
        (0 <= s.crossover <= 1, f"search.crossover={s.crossover}: a probability in [0, 1]"),
        (0 <= s.mutation <= 1, f"search.mutation={s.mutation}: a probability in [0, 1]"),
        (
            0 <= s.elitism < s.population,
            f"search.elitism={s.elitism}: give 0 to search.population - 1 ({s.population - 1})",
        ),
        (s.max_params >= 0, f"search.max_params={s.max_params}: 0 (no budget) or a count"),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)
