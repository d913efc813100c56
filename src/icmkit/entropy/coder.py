"""Entropy coding of integer symbols against stored probability tables, with constriction's range coder.

Why constriction: a maintained Rust range/ANS coder with numpy 2 wheels; its float→fixed-point model
quantisation is deterministic, so equal stored tables give equal integer CDFs on every machine.

A :class:`TableSet` holds ``K`` discrete distributions over consecutive integers. Each has an *escape*
bin after its in-range symbols: values outside the table are coded as the escape symbol followed, in a
second pass, by sign and Elias-gamma magnitude with uniform models — so any value round-trips exactly
while the table stays small (the same role as CompressAI's overflow "bypass" coding).
"""

from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np

from icmkit.errors import BitstreamError

MAX_ESCAPE_BITS = 20  # escaped magnitudes < 2**20; latents never come near (encoders clamp to it)
MAX_ESCAPE_VALUE = (1 << MAX_ESCAPE_BITS) - 2

_model = constriction.stream.model
_queue = constriction.stream.queue


class SymbolRangeError(BitstreamError, ValueError):
    """A value to encode beyond what the escape coding can represent (only weights gone wrong produce one)."""


@dataclass(frozen=True)
class TableSet:
    """``pmf[k, :length[k]]`` are the probabilities of ``offset[k] … offset[k]+length[k]-1``;
    ``pmf[k, length[k]]`` is the escape probability. Rows are zero-padded to a common width."""

    pmf: np.ndarray  # (K, L) float
    offset: np.ndarray  # (K,) int
    length: np.ndarray  # (K,) int

    def __post_init__(self):
        if self.pmf.ndim != 2 or self.offset.shape != (self.pmf.shape[0],) or self.length.shape != self.offset.shape:
            raise ValueError("inconsistent table shapes")
        if int(self.length.max(initial=0)) >= self.pmf.shape[1]:
            raise ValueError("table rows too short for their escape bin")

    @property
    def count(self) -> int:
        return self.pmf.shape[0]

    def model(self, k: int):
        # perfect=False: fast construction; encoder and decoder must (and do) use the same setting.
        probabilities = np.asarray(self.pmf[k, : int(self.length[k]) + 1], dtype=np.float64)
        return _model.Categorical(probabilities, perfect=False)


def _groups(table_index: np.ndarray):
    """Positions grouped by table, in a canonical order both coder sides reproduce."""
    order = np.argsort(table_index, kind="stable")
    tables, starts = np.unique(table_index[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    return order, zip(tables.tolist(), starts.tolist(), ends.tolist())


def _to_bytes(words: np.ndarray) -> bytes:
    data = words.astype("<u4").tobytes()
    # Trailing zero bytes of the last word carry no information; the decoder pads them back.
    keep = len(data)
    while keep > max(len(data) - 3, 1) and data[keep - 1] == 0:
        keep -= 1
    return data[:keep] if data else b""


def _from_bytes(data: bytes) -> np.ndarray:
    padded = data + b"\0" * (-len(data) % 4)
    return np.frombuffer(padded, dtype="<u4").astype(np.uint32)


def encode_with_tables(values: np.ndarray, table_index: np.ndarray, tables: TableSet) -> bytes:
    """Code integer ``values`` (any shape), each with the table ``table_index`` names (same shape)."""
    values = np.asarray(values, dtype=np.int64).ravel()
    table_index = np.asarray(table_index, dtype=np.int64).ravel()
    if values.shape != table_index.shape:
        raise ValueError("values and table_index differ in size")
    if values.size == 0:
        return b""
    if values.min() < -(MAX_ESCAPE_VALUE // 2) or values.max() > MAX_ESCAPE_VALUE // 2:  # not abs(): INT64_MIN
        raise SymbolRangeError(
            "symbol magnitude beyond the coder's escape range (latents this large come from broken weights)"
        )
    offset = tables.offset.astype(np.int64)[table_index]
    length = tables.length.astype(np.int64)[table_index]
    rel = values - offset
    escaped = (rel < 0) | (rel >= length)
    symbols = np.where(escaped, length, rel).astype(np.int32)

    encoder = _queue.RangeEncoder()
    order, groups = _groups(table_index)
    for k, start, end in groups:
        encoder.encode(symbols[order[start:end]], tables.model(k))

    # Escapes, in the same canonical order: sign, bit count, then the low bits of (magnitude + 1).
    esc_pos = order[escaped[order]]
    if esc_pos.size:
        rel_e, len_e = rel[esc_pos], length[esc_pos]
        negative = rel_e < 0
        magnitude = np.where(negative, -rel_e - 1, rel_e - len_e) + 1
        nbits = np.floor(np.log2(magnitude)).astype(np.int64)
        nbits = nbits - (np.left_shift(1, nbits) > magnitude)  # guard log2 rounding
        encoder.encode(negative.astype(np.int32), _model.Uniform(2))
        encoder.encode(nbits.astype(np.int32), _model.Uniform(MAX_ESCAPE_BITS + 1))
        has_low = nbits > 0
        if has_low.any():
            low = magnitude[has_low] - np.left_shift(1, nbits[has_low])
            sizes = np.left_shift(1, nbits[has_low]).astype(np.int32)
            encoder.encode(low.astype(np.int32), _model.Uniform(), sizes)
    return _to_bytes(encoder.get_compressed())


def decode_with_tables(data: bytes, table_index: np.ndarray, tables: TableSet) -> np.ndarray:
    """Inverse of :func:`encode_with_tables`; returns int64 values shaped like ``table_index``.

    This is the one boundary every learned codec decodes through, so it is total on any ``data``: the
    result is either what an encoder could have written or a :class:`BitstreamError`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"entropy-coded data must be bytes, not {type(data).__name__}")
    shape = np.shape(table_index)
    table_index = np.asarray(table_index, dtype=np.int64).ravel()
    if table_index.size == 0:
        if len(data):
            raise BitstreamError("corrupt entropy-coded stream (data where no symbols are coded)")
        return np.zeros(shape, dtype=np.int64)
    if table_index.min() < 0 or table_index.max() >= tables.count:
        raise BitstreamError("entropy table index out of range (corrupt stream)")
    try:
        values = _decode_symbols(_queue.RangeDecoder(_from_bytes(bytes(data))), table_index, tables)
    # constriction reports data that no symbol sequence could produce (its DecoderFrontendError::InvalidData)
    # as an AssertionError, and nothing else on data; anything else here is a bug and keeps its traceback.
    except AssertionError:
        raise BitstreamError("corrupt entropy-coded stream (invalid for its probability tables)") from None
    return values.reshape(shape)


def _decode_symbols(decoder, table_index: np.ndarray, tables: TableSet) -> np.ndarray:
    symbols = np.empty(table_index.size, dtype=np.int64)
    order, groups = _groups(table_index)
    for k, start, end in groups:
        symbols[order[start:end]] = decoder.decode(tables.model(k), end - start)
    offset = tables.offset.astype(np.int64)[table_index]
    length = tables.length.astype(np.int64)[table_index]
    values = symbols + offset
    escaped = symbols >= length
    esc_pos = order[escaped[order]]
    if esc_pos.size:
        count = esc_pos.size
        negative = decoder.decode(_model.Uniform(2), count).astype(bool)
        nbits = decoder.decode(_model.Uniform(MAX_ESCAPE_BITS + 1), count).astype(np.int64)
        magnitude = np.left_shift(1, nbits)
        has_low = nbits > 0
        if has_low.any():
            sizes = np.left_shift(1, nbits[has_low]).astype(np.int32)
            magnitude[has_low] += decoder.decode(_model.Uniform(), sizes).astype(np.int64)
        magnitude -= 1
        rel = np.where(negative, -magnitude - 1, magnitude + length[esc_pos])
        values[esc_pos] = rel + offset[esc_pos]
        # The encoder refuses larger magnitudes, so only a corrupt stream holds them.
        if np.abs(values[esc_pos]).max() > MAX_ESCAPE_VALUE // 2:
            raise BitstreamError("corrupt entropy-coded stream (escaped symbol out of range)")
    # Every stream an encoder writes is consumed to its last word, so more data (beyond the one word the
    # decoder reads ahead) means a corrupt or extended stream; a cut one reads as zeros, which CRCs catch.
    if not decoder.maybe_exhausted():
        raise BitstreamError("corrupt entropy-coded stream (data left after its last symbol)")
    return values
