"""Name -> object registries, so a config selects models, optimizers, ops and sources by string."""

import difflib
from collections.abc import Callable
from typing import Any

from medjax.errors import ConfigError


def suggest(name: str, valid) -> str:
    """' Did you mean X?' for the closest valid names, or ''."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class Registry:
    """A named collection of factories with helpful lookup errors.

    `kind` names what is registered ("model", "optimizer", ...) and `config_key` where the config
    selects it, so a lookup failure can tell the user exactly which setting to change.
    """

    def __init__(self, kind: str, config_key: str):
        self.kind = kind
        self.config_key = config_key
        self._entries: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None) -> Callable:
        def add(o):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = o
            return o

        return add(obj) if obj is not None else add

    def get(self, name: str) -> Any:
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} {name!r} in {self.config_key}.{suggest(name, self._entries)} "
                f"Valid names: {', '.join(sorted(self._entries))}."
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
