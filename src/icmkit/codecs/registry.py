"""Codec registry: one name → one codec instance. Names are unique; built-ins register lazily."""

from __future__ import annotations

from icmkit.codecs.base import Codec
from icmkit.errors import UnknownCodecError

_CODECS: dict[str, Codec] = {}
_builtins_loaded = False


def register_codec(codec: Codec) -> Codec:
    """Register a codec instance under ``codec.name``; a second codec of the same name is refused."""
    if codec.name in _CODECS:
        raise ValueError(f"a codec named {codec.name!r} is already registered")
    _CODECS[codec.name] = codec
    return codec


def unregister_codec(name: str) -> None:
    _CODECS.pop(name, None)


def _ensure_builtins() -> None:
    # Deferred so that importing icmkit registers nothing and loads no optional library.
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from icmkit.codecs import builtin

    for make in builtin.BUILTIN_CODECS:
        register_codec(make())


def get_codec(name: str) -> Codec:
    """The codec registered as ``name``; a path to an icmkit ``.safetensors`` weights file builds (and
    registers) a codec over that file (:mod:`icmkit.codecs.from_file`)."""
    _ensure_builtins()
    from icmkit.codecs.from_file import codec_from_weights_file, looks_like_weights_file

    if name not in _CODECS and isinstance(name, str) and looks_like_weights_file(name):
        return register_codec(codec_from_weights_file(name))
    try:
        return _CODECS[name]
    except KeyError:
        known = ", ".join(sorted(_CODECS))
        raise UnknownCodecError(f"unknown codec {name!r}; known codecs: {known}") from None


def list_codecs() -> list[Codec]:
    _ensure_builtins()
    return list(_CODECS.values())
