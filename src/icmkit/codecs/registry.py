"""Codec registry: one name → one codec instance. Names are unique; built-ins register lazily."""

from __future__ import annotations

from icmkit.codecs.base import Codec
from icmkit.errors import IcmError, UnknownCodecError

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
    registers) a codec over that file (:mod:`icmkit.codecs.from_file`) — for names the *user* gives (``--codec
    FILE``, ``icmkit.get_codec(path)``). A name read from a stream goes through :func:`registered_codec`."""
    _ensure_builtins()
    from icmkit.codecs.from_file import codec_from_weights_file, looks_like_weights_file

    if name not in _CODECS and isinstance(name, str) and looks_like_weights_file(name):
        return register_codec(codec_from_weights_file(name))
    return registered_codec(name)


def registered_codec(name: str) -> Codec:
    """The codec registered as ``name``, never a file: what a stream's header (or any other input) names resolves
    only to a codec registered in this process — built-ins, codecs a program registered, and files the user named
    earlier in the process."""
    _ensure_builtins()
    try:
        return _CODECS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_CODECS))
        raise UnknownCodecError(f"unknown codec {_printable(name)}; known codecs: {known}") from None


def stream_codec(name: str, how_to_name: str = "codec=...") -> Codec:
    """The registered codec a stream's header names (:func:`registered_codec`), with the way out when the header
    names a weights file: a stream never picks the weights that decode it; the user names them."""
    try:
        return registered_codec(name)
    except UnknownCodecError:
        if isinstance(name, str) and name.endswith(".safetensors"):
            hint = "--codec FILE" if how_to_name.startswith("--") else "--codec FILE (codec=FILE in Python)"
            raise UnknownCodecError(
                f"stream was written by a codec over the weights file {_printable(name)}; a stream never chooses "
                f"a weights file: pass {hint} to decode it with that file"
            ) from None
        raise


def _printable(name) -> str:
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."


def split_backbones() -> dict[tuple[str, str], set[str]]:
    """The split backbones of the registered feature codecs — ``(backbone, split)`` → the head digests (hex) their
    weights were trained on — read from their weights files' headers: nothing is built or downloaded."""
    from icmkit.codecs.base import CodecKind
    from icmkit.weights import check_weights_file

    found: dict[tuple[str, str], set[str]] = {}
    for codec in list_codecs():
        if codec.kind != CodecKind.FEATURE or not hasattr(codec, "weights_file") or not codec.availability().ok:
            continue
        files = {codec.weights_file(q) for q in codec.quality.grid} - {None}
        for path in files:
            try:
                config = check_weights_file(path).config
            except IcmError:
                continue  # a broken file: using that codec reports it
            key = (str(config.get("backbone", "")), str(config.get("split", "")))
            found.setdefault(key, set()).add(str(config.get("head_digest", "")))
    return found


def list_codecs() -> list[Codec]:
    _ensure_builtins()
    return list(_CODECS.values())
