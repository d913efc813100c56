"""Learned pixel codecs: a :class:`CompressionModel` + shipped weights, writing ``.icm`` files.

The codec pads the image to the model's stride by edge replication (cheaper to code than zeros),
records the padding in the header and crops it away after decoding. The header names the codec, the
quality and the digest of the weights, so a file decoded with other weights fails cleanly.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from icmkit import bitstream
from icmkit.codecs.base import Availability, Codec, CodecKind, Quality, QualitySpec
from icmkit.errors import BitstreamError, IcmError, QualityError, WeightsMismatchError
from icmkit.image import check_rgb, image_to_tensor
from icmkit.limits import check_decode_memory, max_pixels
from icmkit.models import CompressionModel, VariableRateHyperprior
from icmkit.weights import file_qualities, load_weights, weights_digest
from icmkit.zoo import family, verify_sha256


def tensor_to_image(x: torch.Tensor, in_place: bool = False) -> np.ndarray:
    """(3, H, W) in [0, 1] → H×W×3 uint8 (round half to even, like torch.round). ``in_place``: scale and round
    ``x`` itself (a decoder's own output), instead of three float copies of the image."""
    scaled = x.clamp_(0, 1).mul_(255).round_() if in_place else torch.round(x.clamp(0, 1) * 255)
    return scaled.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


# Working memory of decoding an .icm stream, over what the process holds before (torch, the model): measured
# peak RSS of `icm decompress` on icm-mse streams (and icm-dicm-lite0 feature streams, ≈ 10 % less) of 1–4 MP,
# with /usr/bin/time -v; per pixel of the padded image, the entropy-parameter networks and the decoded image
# dominate (g_s runs in tiles of bounded size).
DECODE_FIXED_BYTES = 160 << 20
DECODE_BYTES_PER_PIXEL = 136


class IcmContainerCodec(Codec):
    """Base of learned codecs that write ``.icm`` files: model cache, padding, header checks.

    Subclasses implement :meth:`_load` (the finalised model of a quality) and say the model's
    ``stride`` (H and W multiples it needs).

    Args:
        name: The codec's name, recorded in every stream's header.
        qualities: The integer qualities offered (the grid; the default is its middle one).
        description: What the codec is, in a sentence or two (listed by ``icm codecs``).
        doc: What the quality knob means, shown with its range.
    """

    kind = CodecKind.PIXEL
    extension = ".icm"
    # Whether ``extra`` is key/value items that may carry a rate-control record (bitstream.with_record).
    header_records = False

    def __init__(self, name: str, qualities: tuple[int, ...], description: str, doc: str):
        self.name = name
        self.description = description
        self._models: dict[Quality, tuple[torch.nn.Module, bytes]] = {}
        self._lock = threading.Lock()
        self._expected_sha256: dict[Path, str] = {}  # zoo files: checked once, on first load
        self.quality = QualitySpec(
            knob="quality",
            grid=qualities,
            lo=min(qualities, default=1),
            hi=max(qualities, default=255),
            default=qualities[len(qualities) // 2] if qualities else 1,
            doc=doc,
            allowed=qualities,
        )

    def _load(self, quality: int) -> torch.nn.Module:
        raise NotImplementedError

    def expect_sha256(self, entries) -> None:
        """Record the zoo table's SHA-256 of each entry's file; :meth:`load_file` checks it."""
        self._expected_sha256.update({entry.path: entry.sha256 for entry in entries if entry.sha256})

    def load_file(self, path: Path) -> CompressionModel:
        """The finalised model in ``path``, after checking a zoo file against its table's SHA-256."""
        if path in self._expected_sha256:
            verify_sha256(path, self._expected_sha256[path])
            del self._expected_sha256[path]  # checked: later loads of the same file skip the hash
        model, _ = load_weights(path)
        model.require_finalized()
        return model

    @staticmethod
    def stride(model: torch.nn.Module) -> int:
        return getattr(model, "stride", 64)

    def _model_key(self, quality: Quality) -> Quality:
        """Which cached model serves ``quality`` (variable-rate codecs: one for all)."""
        return quality

    def model(self, quality: Quality) -> tuple[torch.nn.Module, bytes]:
        """The finalised model for ``quality`` and its weights digest (loaded once, then cached)."""
        key = self._model_key(quality)
        with self._lock:
            if key not in self._models:
                model = self._load(key).eval()
                # Float twins of integer networks are not stored in shipped files (random after loading):
                # the digest covers only what coding reads, so it is the same in every process.
                coding_state = getattr(model, "coding_state_dict", model.state_dict)()  # CompressAI models: all
                self._models[key] = (model, weights_digest(coding_state))
            return self._models[key]

    def weights_file(self, quality: Quality) -> Path | None:
        """The weights file that serves ``quality`` (None for codecs without one), found without loading it."""
        return getattr(self, "_weights", {}).get(self._model_key(quality))

    def fingerprint(self, quality: Quality) -> str:
        return self.model(self.quality.validate(quality))[1].hex()

    def prepare_input(self, image: np.ndarray, model: torch.nn.Module) -> tuple[torch.Tensor, int, int]:
        """The pad-and-convert hook: image → model input ``(1, 3, H', W')`` in [0, 1], padded by edge
        replication to :meth:`stride`; returns it with the rows and columns added."""
        height, width, _ = image.shape
        stride = self.stride(model)
        pad_bottom, pad_right = -height % stride, -width % stride
        x = F.pad(image_to_tensor(image).unsqueeze(0), (0, pad_right, 0, pad_bottom), mode="replicate")
        return x, pad_bottom, pad_right

    def run_compress(self, model: torch.nn.Module, x: torch.Tensor, quality: Quality) -> dict:
        """The model's ``compress`` on a prepared input (feature codecs run the backbone's head first)."""
        return model.compress(x)

    def header_extra(self, model: torch.nn.Module, x: torch.Tensor) -> bytes:
        """Codec-specific header bytes (``extra``); empty for pixel codecs."""
        return b""

    def _code(self, image: np.ndarray, quality: Quality | None) -> tuple[dict, bitstream.IcmHeader]:
        """Prepare the image (:meth:`prepare_input`), compress it, and describe it in a header."""
        self.require_available()
        image = check_rgb(image)
        quality = self.quality.validate(quality)
        model, digest = self.model(quality)
        height, width, _ = image.shape
        x, pad_bottom, pad_right = self.prepare_input(image, model)
        with torch.no_grad():
            coded = self.run_compress(model, x, quality)
        header = bitstream.IcmHeader(
            codec=self.name,
            quality=self.quality.to_id(quality),
            digest=digest,
            width=width,
            height=height,
            kind=self.kind.value,
            pad_bottom=pad_bottom,
            pad_right=pad_right,
            extra=self.header_extra(model, x),
        )
        return coded, header

    def _parse(self, data: bytes) -> tuple[bitstream.IcmHeader, list[bytes], torch.nn.Module]:
        """Verify a stream belongs to this codec, quality and weights; return it with its model."""
        self.require_available()
        header, streams = bitstream.unpack(data, max_pixels=max_pixels())
        if header.codec != self.name:
            raise BitstreamError(f"stream was written by codec {header.codec!r}, not {self.name!r}")
        if header.kind != self.kind.value:
            raise BitstreamError(f"stream is of kind {header.kind!r}, not {self.kind.value!r}")
        check_decode_memory(self.decode_memory([header]), f"{self.name} stream of {header.width}×{header.height}")
        try:
            quality = self.quality.validate(self.quality.from_id(header.quality))
        except QualityError:
            raise BitstreamError(
                f"stream uses quality {self.quality.from_id(header.quality)}, which this installation does not have"
            ) from None
        model, digest = self.model(quality)
        if header.digest != digest:
            raise WeightsMismatchError(
                f"stream was written with other weights (digest {header.digest.hex()}, loaded {digest.hex()})"
            )
        self.check_padding(header, model)
        return header, streams, model

    def decode_memory(self, headers: list[bitstream.IcmHeader]) -> int:
        """Working memory (bytes) that decoding these streams together needs, estimated from their headers
        alone (checked against ``ICM_MAX_DECODE_MEMORY`` before any model runs or tensor is allocated)."""
        pixels = sum((h.height + h.pad_bottom) * (h.width + h.pad_right) for h in headers)
        return DECODE_FIXED_BYTES + DECODE_BYTES_PER_PIXEL * pixels

    def check_padding(self, header: bitstream.IcmHeader, model: torch.nn.Module) -> None:
        """Refuse a header whose padding is not what :meth:`prepare_input` adds for this model."""
        stride = self.stride(model)
        padded_h, padded_w = header.height + header.pad_bottom, header.width + header.pad_right
        if padded_h % stride or padded_w % stride or max(header.pad_bottom, header.pad_right) >= stride:
            raise BitstreamError("malformed stream (padding does not match the model's stride)")


class LearnedPixelCodec(IcmContainerCodec):
    """icmkit's own learned pixel codecs: weights from the zoo or a file; streams as the model writes them.

    Args:
        name: The codec's name, recorded in every stream's header.
        weights: One weights file per quality (empty: the codec is unavailable).
        description: What the codec is, in a sentence or two (listed by ``icm codecs``).
    """

    header_records = True

    def __init__(self, name: str, weights: dict[int, Path], description: str = ""):
        self._weights = dict(sorted(weights.items()))
        super().__init__(name, tuple(self._weights), description, "index into the shipped rate points, low → high rate")

    @classmethod
    def from_weights_file(cls, path: str | Path, name: str = "icm-custom", quality: int = 1) -> LearnedPixelCodec:
        return cls(name, {quality: Path(path)}, f"weights from {path}")

    def availability(self) -> Availability:
        if not self._weights:
            return Availability(False, "no weights shipped for this codec in this installation")
        return Availability(True)

    def _load(self, quality: int) -> CompressionModel:
        return self.load_file(self._weights[quality])

    def encode(self, image: np.ndarray, quality: Quality | None = None) -> bytes:
        coded, header = self._code(image, quality)
        return bitstream.pack(header, [strings[0] for strings in coded["strings"]])

    def decompress(self, model: CompressionModel, strings: list[list[bytes]], shape, quality: Quality) -> torch.Tensor:
        """The model's ``decompress`` on a group of streams of one quality and size → ``x̂``."""
        return model.decompress(strings, shape)["x_hat"]

    def decode(self, data: bytes) -> np.ndarray:
        return self.decode_batch([data])[0]

    def decode_batch(self, streams: list[bytes]) -> list[np.ndarray]:
        """Decode several streams; those of equal size and quality run through the synthesis together."""
        parsed = [self._parse(data) for data in streams]
        for _, parts, model in parsed:
            if len(parts) != model.stream_count:
                raise BitstreamError(
                    f"malformed stream for a learned pixel codec (expected {model.stream_count} streams)"
                )
        for header, _, _ in parsed:  # empty, or the rate-control record alone
            if header.extra and set(bitstream.unpack_extra(header.extra)) != {bitstream.RECORD_KEY}:
                raise BitstreamError("malformed stream for a learned pixel codec (unexpected extra header)")
        results: list[np.ndarray | None] = [None] * len(parsed)
        groups: dict[tuple, list[int]] = {}
        for i, (header, _, _) in enumerate(parsed):
            key = (header.quality, header.height + header.pad_bottom, header.width + header.pad_right)
            groups.setdefault(key, []).append(i)
        for (quality_id, padded_h, padded_w), members in groups.items():
            if len(members) > 1:  # decoded as one batch: their working memory adds up
                count = len(members)
                check_decode_memory(self.decode_memory([parsed[i][0] for i in members]), f"{count} {self.name} streams")
            model = parsed[members[0]][2]
            strings = [[parsed[i][1][k] for i in members] for k in range(model.stream_count)]
            shape = (padded_h // self.stride(model), padded_w // self.stride(model))
            with torch.no_grad():
                x_hat = self.decompress(model, strings, shape, self.quality.from_id(quality_id))
            for row, i in enumerate(members):
                header = parsed[i][0]
                results[i] = tensor_to_image(x_hat[row, :, : header.height, : header.width], in_place=True)
        return results


class VariableRatePixelCodec(LearnedPixelCodec):
    """One :class:`~icmkit.models.VariableRateHyperprior` weights file: a continuous quality in
    ``[1, qualities]`` (integers are the trained rate points, values between interpolate the gains).

    Args:
        name: The codec's name, recorded in every stream's header.
        path: The weights file (``None``: the codec is unavailable).
        qualities: How many rate points the file was trained with.
        description: What the codec is, in a sentence or two (listed by ``icm codecs``).
    """

    # The quality step the header stores (its byte holds (q − 1) / RESOLUTION + 1): 1/40 of a rate point,
    # finer than any rate difference worth a byte, and 7 rate points still fit in 1…241.
    RESOLUTION = 0.025

    def __init__(self, name: str, path: Path | None, qualities: int, description: str = ""):
        super().__init__(name, {q: path for q in range(1, qualities + 1)} if path else {}, description)
        if (qualities - 1) / self.RESOLUTION + 1 > 255:
            raise ValueError(f"{qualities} rate points do not fit the header's quality byte")
        grid = tuple(range(1, qualities + 1))
        self.quality = QualitySpec(
            knob="quality",
            grid=grid,
            lo=1,
            hi=max(qualities, 1),
            default=grid[len(grid) // 2] if grid else 1,
            doc=f"continuous, low → high rate; integers are the trained rate points (step {self.RESOLUTION})",
            resolution=self.RESOLUTION,
        )

    @classmethod
    def from_weights_file(cls, path: str | Path, name: str = "icm-custom", quality: int = 1) -> LearnedPixelCodec:
        return cls(name, Path(path), file_qualities(path), f"weights from {path}")

    def _model_key(self, quality: Quality) -> Quality:
        return 1  # one model serves every quality

    def _load(self, quality: int) -> CompressionModel:
        model = self.load_file(self._weights[quality])
        if not isinstance(model, VariableRateHyperprior):
            raise IcmError(f"{self._weights[quality]}: holds a {model.architecture} model, not a variable-rate one")
        return model

    def run_compress(self, model: torch.nn.Module, x: torch.Tensor, quality: Quality) -> dict:
        return model.compress(x, quality)

    def decompress(self, model: CompressionModel, strings: list[list[bytes]], shape, quality: Quality) -> torch.Tensor:
        return model.decompress(strings, shape, quality)["x_hat"]


def pixel_family(name: str, description: str) -> LearnedPixelCodec:
    """The codec of a shipped pixel family: one variable-rate file, or (v1 layout) one file per rate point."""
    entries = family(name)
    if entries and entries[0].architecture == VariableRateHyperprior.architecture:
        codec = VariableRatePixelCodec(name, entries[0].path, len(entries), description)
    else:
        codec = LearnedPixelCodec(name, {e.quality: e.path for e in entries}, description)
    codec.expect_sha256(entries)
    return codec


def _mse_family() -> LearnedPixelCodec:
    return pixel_family(
        "icm-mse",
        "icmkit variable-rate mean-scale hyperprior (N=64, M=160) with a two-pass checkerboard context, trained "
        "for MSE + rate; exact-integer entropy parameters",
    )


def _mmd_family() -> LearnedPixelCodec:
    return pixel_family(
        "icm-mmd",
        "icm-mse's architecture trained with rate + MSE + MMD² between EfficientNet-Lite0 features of "
        "original and decoded images (perception consistency)",
    )


LEARNED_CODECS = [_mse_family, _mmd_family]
