"""Modules imported at the first use of one of their names.

numpy and pyarrow cost ~0.1 s of start-up (more on a busy machine); an agent whose path
never needs them (TAILDIR -> memory -> file_roll moves its lines in bytes and memoryviews)
should not pay it. A module that may not need them writes

    if TYPE_CHECKING:
        import numpy as np
    else:
        np = lazy_module(globals(), "np", "numpy")

and uses `np` as usual: the first attribute looked up imports numpy and puts it in the
module's globals in place of the stand-in, so later lookups cost nothing extra.
"""
from __future__ import annotations

import importlib


class _Lazy:
    __slots__ = ("_namespace", "_alias", "_name")

    def __init__(self, namespace: dict, alias: str, name: str):
        self._namespace, self._alias, self._name = namespace, alias, name

    def __getattr__(self, attr: str):
        module = importlib.import_module(self._name)
        if self._namespace.get(self._alias) is self:
            self._namespace[self._alias] = module
        return getattr(module, attr)


def lazy_module(namespace: dict, alias: str, name: str) -> _Lazy:
    """A stand-in for module `name` that replaces itself by it in `namespace` (a module's
    globals()) under `alias` at its first use."""
    return _Lazy(namespace, alias, name)
