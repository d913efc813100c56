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
from icmkit.codecs.base import Availability, Codec, CodecKind, QualitySpec
from icmkit.errors import BitstreamError, QualityError, WeightsMismatchError
from icmkit.image import check_rgb, image_to_tensor
from icmkit.limits import max_pixels
from icmkit.models import CompressionModel
from icmkit.weights import load_weights, weights_digest
from icmkit.zoo import family


def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] → H×W×3 uint8 (round half to even, like torch.round)."""
    return torch.round(x.clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


class IcmContainerCodec(Codec):
    """Base of learned codecs that write ``.icm`` files: model cache, padding, header checks.

    Subclasses implement :meth:`_load` (the finalised model of a quality) and say the model's
    ``stride`` (H and W multiples it needs).
    """

    kind = CodecKind.PIXEL
    extension = ".icm"

    def __init__(self, name: str, qualities: tuple[int, ...], description: str, doc: str):
        self.name = name
        self.description = description
        self._models: dict[int, tuple[torch.nn.Module, bytes]] = {}
        self._lock = threading.Lock()
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

    @staticmethod
    def stride(model: torch.nn.Module) -> int:
        return getattr(model, "stride", 64)

    def model(self, quality: int) -> tuple[torch.nn.Module, bytes]:
        """The finalised model for ``quality`` and its weights digest (loaded once, then cached)."""
        with self._lock:
            if quality not in self._models:
                model = self._load(quality).eval()
                # Float twins of integer networks are not stored in shipped files (random after loading):
                # the digest covers only what coding reads, so it is the same in every process.
                coding_state = getattr(model, "coding_state_dict", model.state_dict)()  # CompressAI models: all
                self._models[quality] = (model, weights_digest(coding_state))
            return self._models[quality]

    def fingerprint(self, quality: int) -> str:
        return self.model(self.quality.validate(quality))[1].hex()

    def prepare_input(self, image: np.ndarray, model: torch.nn.Module) -> tuple[torch.Tensor, int, int]:
        """The pad-and-convert hook: image → model input ``(1, 3, H', W')`` in [0, 1], padded by edge
        replication to :meth:`stride`; returns it with the rows and columns added."""
        height, width, _ = image.shape
        stride = self.stride(model)
        pad_bottom, pad_right = -height % stride, -width % stride
        x = F.pad(image_to_tensor(image).unsqueeze(0), (0, pad_right, 0, pad_bottom), mode="replicate")
        return x, pad_bottom, pad_right

    def run_compress(self, model: torch.nn.Module, x: torch.Tensor, quality: int) -> dict:
        """The model's ``compress`` on a prepared input (feature codecs run the backbone's head first)."""
        return model.compress(x)

    def header_extra(self, model: torch.nn.Module, x: torch.Tensor) -> bytes:
        """Codec-specific header bytes (``extra``); empty for pixel codecs."""
        return b""

    def _code(self, image: np.ndarray, quality: int | None) -> tuple[dict, bitstream.IcmHeader]:
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
            quality=quality,
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
        try:
            quality = self.quality.validate(header.quality)
        except QualityError:
            raise BitstreamError(
                f"stream uses quality {header.quality}, which this installation does not have"
            ) from None
        model, digest = self.model(quality)
        if header.digest != digest:
            raise WeightsMismatchError(
                f"stream was written with other weights (digest {header.digest.hex()}, loaded {digest.hex()})"
            )
        stride = self.stride(model)
        padded_h, padded_w = header.height + header.pad_bottom, header.width + header.pad_right
        if padded_h % stride or padded_w % stride or max(header.pad_bottom, header.pad_right) >= stride:
            raise BitstreamError("malformed stream (padding does not match the model's stride)")
        return header, streams, model


class LearnedPixelCodec(IcmContainerCodec):
    """icmkit's own learned pixel codecs: weights from the zoo or a file, two streams (y, z)."""

    def __init__(self, name: str, weights: dict[int, Path], description: str = ""):
        self._weights = dict(sorted(weights.items()))
        super().__init__(name, tuple(self._weights), description, "index into the shipped rate points, low → high rate")

    @classmethod
    def from_zoo(cls, family_name: str, description: str) -> LearnedPixelCodec:
        return cls(family_name, {e.quality: e.path for e in family(family_name)}, description)

    @classmethod
    def from_weights_file(cls, path: str | Path, name: str = "icm-custom", quality: int = 1) -> LearnedPixelCodec:
        return cls(name, {quality: Path(path)}, f"weights from {path}")

    def availability(self) -> Availability:
        if not self._weights:
            return Availability(False, "no weights shipped for this codec in this installation")
        return Availability(True)

    def _load(self, quality: int) -> CompressionModel:
        model, _ = load_weights(self._weights[quality])
        model.require_finalized()
        return model

    def encode(self, image: np.ndarray, quality: int | None = None) -> bytes:
        coded, header = self._code(image, quality)
        y_strings, z_strings = coded["strings"]
        return bitstream.pack(header, [y_strings[0], z_strings[0]])

    def decode(self, data: bytes) -> np.ndarray:
        return self.decode_batch([data])[0]

    def decode_batch(self, streams: list[bytes]) -> list[np.ndarray]:
        """Decode several streams; those of equal size and quality run through the synthesis together."""
        parsed = [self._parse(data) for data in streams]
        if any(len(p[1]) != 2 for p in parsed):
            raise BitstreamError("malformed stream for a learned pixel codec (expected 2 streams)")
        if any(p[0].extra for p in parsed):
            raise BitstreamError("malformed stream for a learned pixel codec (unexpected extra header)")
        results: list[np.ndarray | None] = [None] * len(parsed)
        groups: dict[tuple, list[int]] = {}
        for i, (header, _, _) in enumerate(parsed):
            key = (header.quality, header.height + header.pad_bottom, header.width + header.pad_right)
            groups.setdefault(key, []).append(i)
        for (_, padded_h, padded_w), members in groups.items():
            model = parsed[members[0]][2]
            y_strings = [parsed[i][1][0] for i in members]
            z_strings = [parsed[i][1][1] for i in members]
            shape = (padded_h // self.stride(model), padded_w // self.stride(model))
            with torch.no_grad():
                x_hat = model.decompress([y_strings, z_strings], shape)["x_hat"]
            for row, i in enumerate(members):
                header = parsed[i][0]
                results[i] = tensor_to_image(x_hat[row, :, : header.height, : header.width])
        return results


def _mse_family() -> LearnedPixelCodec:
    return LearnedPixelCodec.from_zoo(
        "icm-mse",
        "icmkit mean-scale hyperprior (N=64, M=160), trained for MSE + rate; exact-integer entropy parameters",
    )


def _mmd_family() -> LearnedPixelCodec:
    return LearnedPixelCodec.from_zoo(
        "icm-mmd",
        "icm-mse's architecture trained with rate + MSE + MMD² between EfficientNet-Lite0 features of "
        "original and decoded images (perception consistency)",
    )


LEARNED_CODECS = [_mse_family, _mmd_family]
