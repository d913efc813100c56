"""Shared skeleton of the video-intra anchors that write a raw Annex-B stream (``hevc444``, ``vvc``).

Encoding: pad the RGB image by edge replication to whole 8×8 blocks (and at least 16×16, which
both encoders need), convert it to full-range BT.601 YCbCr planes (:mod:`._ycbcr`), let the
subclass code one intra picture, wrap the stream in the tiny :mod:`._rawstream` header. Decoding:
PyAV's (FFmpeg's) decoder in-process, the inverse colour conversion, the crop back to the width and
height of the header. The padded size follows from width and height, so nothing else is stored.
"""

from __future__ import annotations

import importlib.util
from abc import abstractmethod

import numpy as np

from icmkit.codecs.anchors import _rawstream
from icmkit.codecs.anchors._guard import decoding, stream_bytes
from icmkit.codecs.anchors._padding import crop, pad_to
from icmkit.codecs.anchors._ycbcr import planes_to_rgb, rgb_to_planes
from icmkit.codecs.base import Codec
from icmkit.errors import BitstreamError
from icmkit.image import check_rgb

BLOCK = 8  # smallest CU of both HEVC and VVC; whole blocks need no conformance cropping


def pyav_missing(*codecs: str) -> str | None:
    """Why PyAV cannot provide ``codecs`` (encoder or decoder names), or None when it can."""
    if importlib.util.find_spec("av") is None:
        return "PyAV is not installed: pip install av"
    import av

    absent = [name for name in codecs if name not in av.codecs_available]
    return f"PyAV's FFmpeg lacks {', '.join(absent)}" if absent else None


class RawVideoCodec(Codec):
    """Base of the video-intra anchors: pads, converts and wraps; a subclass codes the planes with its encoder.

    A subclass sets the class attributes below and implements :meth:`_encode_planes`; decoding is shared.
    """

    stream_kind: _rawstream.StreamKind
    bit_depth: int
    subsample: bool  # 4:2:0 when True, else 4:4:4
    decoder: str  # PyAV decoder name
    pix_fmt: str  # the FFmpeg pixel format of the planes, on both sides
    min_side: int = 16  # x265 and vvenc refuse some 8-pixel-wide pictures

    @abstractmethod
    def _encode_planes(self, planes: list[np.ndarray], width: int, height: int, quality: int) -> bytes:
        """Code one intra picture of ``width``×``height`` from integer YCbCr planes; return Annex-B."""

    def encode(self, image: np.ndarray, quality: int | None = None) -> bytes:
        image = check_rgb(image)
        value = self.quality.validate(quality)
        self.require_available()
        padded = pad_to(image, self._coded(image.shape[0]), self._coded(image.shape[1]))
        planes = rgb_to_planes(padded, self.bit_depth, self.subsample)
        stream = self._encode_planes(planes, padded.shape[1], padded.shape[0], value)
        header = _rawstream.RawHeader(self.stream_kind, self.bit_depth, image.shape[1], image.shape[0])
        return _rawstream.pack(header, stream)

    def decode(self, data: bytes) -> np.ndarray:
        header, stream = _rawstream.unpack(stream_bytes(data, self.name), self.stream_kind, self.bit_depth, self.name)
        self.require_available()
        height, width = self._coded(header.height), self._coded(header.width)
        # FFmpeg checks its allocations against max_pixels with sides rounded up (stride alignment, CTUs of
        # up to 128): allow that much, no more; the exact size is checked below.
        planes = self._decode_planes(stream, (width + -width % 128) * (height + -height % 128))
        chroma = (height // 2, width // 2) if self.subsample else (height, width)
        if [p.shape for p in planes] != [(height, width), chroma, chroma]:
            raise BitstreamError(f"{self.name}: stream picture does not match the {width}×{height} header")
        return crop(planes_to_rgb(planes, self.bit_depth), header.height, header.width)

    def _coded(self, side: int) -> int:
        """The padded side actually coded: whole blocks, at least the encoder's minimum."""
        return max(self.min_side, side + -side % BLOCK)

    def _decode_planes(self, stream: bytes, max_pixels: int) -> list[np.ndarray]:
        import av

        with decoding(self.name):
            ctx = av.CodecContext.create(self.decoder, "r")
            # FFmpeg allocates what the stream's own parameter sets declare; cap it near our header's size.
            ctx.options = {"max_pixels": str(max_pixels), "threads": "1"}
            try:
                frames = [*ctx.decode(av.Packet(stream)), *ctx.decode(None)]
            except av.error.MemoryError:
                raise BitstreamError(f"{self.name}: stream picture is larger than its header declares") from None
        if len(frames) != 1:
            raise BitstreamError(f"{self.name}: stream holds {len(frames)} pictures, expected 1")
        frame = frames[0]
        if frame.format.name != self.pix_fmt:
            raise BitstreamError(f"{self.name}: stream picture is {frame.format.name}, expected {self.pix_fmt}")
        dtype = np.dtype(np.uint8 if self.bit_depth <= 8 else "<u2")
        return [_plane_array(plane, dtype) for plane in frame.planes]


def _plane_array(plane, dtype: np.dtype) -> np.ndarray:
    # Rows are line_size bytes apart (FFmpeg aligns them); keep only the picture's samples.
    per_row = plane.line_size // dtype.itemsize
    rows = np.frombuffer(plane, dtype, count=plane.height * per_row).reshape(plane.height, per_row)
    return rows[:, : plane.width].copy()
