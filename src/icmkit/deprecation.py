"""Old public names kept for one release with a :class:`DeprecationWarning` (a module's ``__getattr__``)."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable


def renamed(module: str, names: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that answers each old name in ``names`` (old → ``"package.module:new"``) with the
    new object and a warning naming the new spelling; other names raise ``AttributeError`` as usual."""

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        where, _, new = names[name].partition(":")
        warnings.warn(
            f"{module}.{name} is deprecated and will be removed: use {where}.{new}", DeprecationWarning, stacklevel=2
        )
        return getattr(importlib.import_module(where), new)

    return __getattr__
