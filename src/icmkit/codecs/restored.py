"""``BASE+FILTER``: a standard codec's stream, restored at the receiver by a trained filter (issue 21).

Encoding is the base codec's, byte for byte: the file stays a standard one (any HEVC / JPEG decoder reads it,
hardware included). Decoding is the base decode followed by a :class:`~icmkit.models.restoration.RestorationNet`
conditioned on the stream's quality, which is read from the standard syntax itself — no side channel:

- ``hevc444``: the first slice's QP (:func:`~icmkit.codecs.anchors.hevc_headers.slice_qp`); x265 at BPG's ``q``
  writes ``QP = q − 2`` (its constant QP ``q + 1`` minus the I-picture offset 6·log2(ipratio 1.4) ≈ 3 — checked
  for every q of 2…50), so the condition is ``QP + 2`` (q 0 and 1 both give QP 0, below any training range);
- ``jpeg``: the libjpeg quality whose luminance table the file's matches
  (:func:`~icmkit.codecs.anchors.jpeg_quality.estimate_quality`; exact for libjpeg's files, the nearest libjpeg
  strength for a camera's own tables).

A JPEG written outside icmkit restores the same way (``icm decompress photo.jpg --restore jpeg+mmd``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from icmkit.codecs.base import Availability, Codec, CodecKind, Quality
from icmkit.errors import IcmError
from icmkit.limits import check_decode_memory

FILTER_SEPARATOR = "+"
X265_I_OFFSET = 2  # BPG's q = the I picture's slice QP + 2 with the hevc444 anchor's x265 settings
# Working memory of restoring, over the base decode: the 8-bit padded input and output (6 B/px) and the tiles'
# float tensors (128² quarter-resolution samples grown by the halo: ≈ 60 MiB at width 64).
RESTORE_FIXED_BYTES = 96 << 20
RESTORE_BYTES_PER_PIXEL = 8


def hevc444_quality(data: bytes, codec: str = "hevc444") -> float:
    from icmkit.codecs.anchors import _rawstream
    from icmkit.codecs.anchors.hevc_headers import slice_qp

    _, stream = _rawstream.unpack(data, _rawstream.StreamKind.HEVC_444, 8, codec)
    return float(slice_qp(stream, codec) + X265_I_OFFSET)


def jpeg_quality(data: bytes, codec: str = "jpeg") -> float:
    from icmkit.codecs.anchors.jpeg_quality import estimate_quality

    return float(estimate_quality(data, codec))


# How the quality a filter is conditioned on is read from a base codec's stream.
STREAM_QUALITY: dict[str, Callable[[bytes, str], float]] = {
    "hevc444": hevc444_quality,
    "jpeg": jpeg_quality,
    "jpeg444": jpeg_quality,
}


class RestoredCodec(Codec):
    """A base pixel codec whose decoded images pass through a restoration filter.

    One filter conditioned on the quality covers the base codec's range; several filters split it into bands
    (each file's ``quality_lo…quality_hi``): a stream is restored by the filter whose band holds its quality, the
    nearest band outside them all.

    Args:
        base: the base codec (its ``quality``, ``extension`` and streams are this codec's).
        weights: the filter's weights file (a zoo file, or one a user trained with ``icm train``), or one file per
            quality band.
        name: the composed codec's name (default ``BASE+FILTER`` with ``filter_name``).
        filter_name: the filter's short name in the default name.
        sha256: the zoo table's digest of each weights file (one, or one per file), checked on first load.
        description: one line for ``icm codecs``.
    """

    kind = CodecKind.PIXEL

    def __init__(
        self,
        base: Codec,
        weights: Path | Sequence[Path],
        name: str = "",
        filter_name: str = "",
        sha256: str | Sequence[str] = "",
        description: str = "",
    ):
        if base.kind is not CodecKind.PIXEL:
            raise IcmError(f"a restoration filter needs a pixel codec as its base, not {base.name} ({base.kind.value})")
        self.base = base
        self.weights_files = [Path(weights)] if isinstance(weights, (str, Path)) else [Path(w) for w in weights]
        if not self.weights_files:
            raise IcmError("a restoration codec needs at least one filter weights file")
        self.weights = self.weights_files[0]
        self.sha256s = [sha256] if isinstance(sha256, str) else list(sha256)
        if self.sha256s == [""]:  # no digests to check (a user's files)
            self.sha256s *= len(self.weights_files)
        if len(self.sha256s) != len(self.weights_files):
            raise IcmError(f"{len(self.sha256s)} digests for {len(self.weights_files)} filter weights files")
        self.name = name or f"{base.name}{FILTER_SEPARATOR}{filter_name}"
        self.description = description or f"{base.description}, restored by a trained filter"
        self.extension = base.extension
        self.quality = base.quality
        self.family = ""  # the zoo family of a shipped filter
        self._nets: list | None = None
        self._digest = ""
        self._lock = threading.Lock()

    def availability(self) -> Availability:
        base = self.base.availability()
        if not base.ok:
            return base
        if self.base.name not in STREAM_QUALITY:
            return Availability(False, f"the quality of a {self.base.name} stream cannot be read")
        for path in self.weights_files:
            if not path.is_file():
                return Availability(False, f"filter weights {path.name} are not installed")
        return Availability(True)

    def filters(self) -> list:
        """The restoration networks, one per quality band (loaded and checked once)."""
        from icmkit.weights import load_weights, weights_digest
        from icmkit.zoo import verify_sha256

        with self._lock:
            if self._nets is None:
                self.require_available()
                nets = []
                for path, digest in zip(self.weights_files, self.sha256s):
                    if digest:
                        verify_sha256(path, digest)
                    net, _ = load_weights(path)
                    if getattr(net, "architecture", "") != "restoration-cnn":
                        raise IcmError(f"{path}: holds a {net.architecture} model, not a restoration filter")
                    if net.base != self.base.name:
                        raise IcmError(f"{path}: a filter trained behind {net.base}, not {self.base.name}")
                    nets.append(net.eval())
                self._digest = "+".join(weights_digest(net.state_dict()).hex() for net in nets)
                self._nets = nets
            return self._nets

    def filter(self, quality: float | None = None):
        """The network that restores streams of ``quality``: the one whose band holds it, else the nearest band
        (the first filter when ``quality`` is None)."""
        nets = self.filters()
        if quality is None:
            return nets[0]

        def distance(net) -> float:
            return max(net.config["quality_lo"] - quality, quality - net.config["quality_hi"], 0.0)

        return min(nets, key=distance)

    def fingerprint(self, quality: Quality) -> str:
        self.filters()
        return f"{self.base.fingerprint(quality)}+{self._digest}"

    def encode(self, image: np.ndarray, quality: Quality | None = None) -> bytes:
        return self.base.encode(image, quality)

    def stream_quality(self, data: bytes) -> float:
        """The base quality the stream was written at, read from the stream."""
        return STREAM_QUALITY[self.base.name](bytes(data), self.base.name)

    def decode(self, data: bytes) -> np.ndarray:
        self.require_available()
        decoded = self.base.decode(data)  # first: the base codec's guards (sizes, scans, truncation) see the stream
        return self.restore(decoded, self.stream_quality(data))

    def restore(self, image: np.ndarray, quality: float) -> np.ndarray:
        """The filter on a decoded ``H×W×3`` uint8 image written at ``quality``."""
        height, width = image.shape[:2]
        check_decode_memory(
            RESTORE_FIXED_BYTES + RESTORE_BYTES_PER_PIXEL * height * width, f"{self.name} image of {width}×{height}"
        )
        net = self.filter(quality)
        writable = np.array(image, dtype=np.uint8, order="C")  # decoders may return read-only arrays (3 B/px)
        x = torch.from_numpy(writable).permute(2, 0, 1).unsqueeze(0)
        return net.restore(x, quality)[0].permute(1, 2, 0).contiguous().numpy()


def restored_family(base: Codec, filter_name: str, family_name: str, description: str) -> RestoredCodec:
    """A composed codec over the zoo family's filter files (one per quality band; :func:`restored_codecs` builds
    only installed families)."""
    from icmkit.zoo import family

    entries = family(family_name)
    codec = RestoredCodec(
        base,
        [e.path for e in entries],
        filter_name=filter_name,
        sha256=[e.sha256 for e in entries],
        description=description,
    )
    codec.family = family_name
    return codec


def restored_codec_from_file(path: str, base: Codec) -> RestoredCodec:
    """A composed codec over a filter file a user trained, named by the file's path (as learned codecs over a file
    are: the registry finds it again under the name the user gave)."""
    return RestoredCodec(base, Path(path), name=path, description=f"{base.description}, restored by {path}")


def _hevc444_mmd() -> RestoredCodec:
    from icmkit.codecs.anchors import Hevc444Codec

    return restored_family(
        Hevc444Codec(),
        "mmd",
        "hevc444-mmd",
        "HEVC-444 (x265, BPG settings) restored at the receiver by QP-conditioned filters (one per band of q) "
        "trained with MSE + MMD² of EfficientNet-Lite0 features (perception consistency)",
    )


def _jpeg_mmd() -> RestoredCodec:
    from icmkit.codecs.anchors import JpegCodec

    return restored_family(
        JpegCodec(),
        "mmd",
        "jpeg-mmd",
        "JPEG 4:2:0 restored at the receiver by a quality-conditioned filter trained with MSE + MMD² of "
        "EfficientNet-Lite0 features (perception consistency)",
    )


def restored_codecs() -> list:
    """The composed codecs whose filter ships in this installation (a family is registered once its weights are
    published: a filter is not a codec before it exists)."""
    from icmkit.zoo import family

    return [make for make, name in ((_hevc444_mmd, "hevc444-mmd"), (_jpeg_mmd, "jpeg-mmd")) if family(name)]
