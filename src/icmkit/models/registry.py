"""Architectures by name, and the config a weights file stores to rebuild a model.

``@register_architecture`` on a model class registers it under its ``architecture`` name (what a weights file's
metadata names, :func:`icmkit.weights.load_weights` builds) and records its constructor arguments, defaults
applied, as ``model.config`` — so a model's config is by construction exactly what rebuilds it, and no model
writes it by hand. ``@records_config`` does the recording alone (a model kept out of the codec registry).
"""

from __future__ import annotations

import functools
import inspect

from torch import nn

ARCHITECTURES: dict[str, type[nn.Module]] = {}


def records_config(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: ``self.config`` = the constructor's arguments by name (defaults applied), set after the
    constructor ran. A subclass records its own arguments (its decorator runs last)."""
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if type(self).__init__ is __init__:  # the outermost constructor decides what rebuilds the model
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            self.config = dict(list(bound.arguments.items())[1:])

    cls.__init__ = __init__
    return cls


def register_architecture(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: :func:`records_config`, and ``ARCHITECTURES[cls.architecture] = cls`` (one class a name)."""
    name = cls.architecture
    if name in ARCHITECTURES and ARCHITECTURES[name] is not cls:
        raise ValueError(f"architecture {name!r} is registered already ({ARCHITECTURES[name].__name__})")
    ARCHITECTURES[name] = records_config(cls)
    return cls


def build_model(architecture: str, **config) -> nn.Module:
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}") from None
    return cls(**config)
