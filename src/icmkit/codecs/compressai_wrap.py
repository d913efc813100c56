"""CompressAI models and checkpoints as icmkit codecs (optional extra ``compressai``).

Any model with CompressAI's contract (``compress(x) -> {"strings", "shape"}``, ``decompress(strings,
shape)``, ``update()``) is wrapped: the image is padded to a multiple of 64 by edge replication, the
streams go into an ``.icm`` container whose header names the codec, the quality and the digest of
the weights, and the latent shape travels in the header's ``extra`` field. CompressAI's pretrained
zoo weights are downloaded by CompressAI itself (torch hub cache) on first use.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from icmkit import bitstream
from icmkit.codecs.base import Availability, Codec, CodecKind, QualitySpec, check_rgb
from icmkit.codecs.learned import image_to_tensor, tensor_to_image
from icmkit.errors import BitstreamError, CodecUnavailableError, QualityError, WeightsMismatchError
from icmkit.image import max_pixels
from icmkit.varint import VarintError, decode_uv, encode_uv
from icmkit.weights import weights_digest

PAD_MULTIPLE = 64

# CompressAI zoo architectures registered by default: name → (zoo function, qualities).
ZOO = {
    "bmshj2018-hyperprior": ("bmshj2018_hyperprior", range(1, 9)),
    "mbt2018-mean": ("mbt2018_mean", range(1, 9)),
    "mbt2018": ("mbt2018", range(1, 9)),
    "cheng2020-anchor": ("cheng2020_anchor", range(1, 7)),
}


def compressai_installed() -> bool:
    return importlib.util.find_spec("compressai") is not None


class CompressAICodec(Codec):
    """Wraps CompressAI-contract models; ``loader(quality)`` returns the model for a quality."""

    kind = CodecKind.PIXEL
    extension = ".icm"

    def __init__(self, name: str, loader: Callable[[int], torch.nn.Module], qualities: tuple[int, ...],
                 description: str = "", needs_compressai: bool = True):
        self.name = name
        self.description = description
        self._loader = loader
        self._needs_compressai = needs_compressai
        self._models: dict[int, tuple[torch.nn.Module, bytes]] = {}
        self._lock = threading.Lock()
        self.quality = QualitySpec(
            knob="quality", grid=qualities, lo=min(qualities), hi=max(qualities),
            default=qualities[len(qualities) // 2], doc="CompressAI zoo quality index, low → high rate",
            allowed=qualities,
        )

    @classmethod
    def from_zoo(cls, architecture: str) -> CompressAICodec:
        function, qualities = ZOO[architecture]

        def load(quality: int) -> torch.nn.Module:
            from compressai import zoo

            return getattr(zoo, function)(quality=quality, pretrained=True)

        return cls(f"compressai-{architecture}", load, tuple(qualities),
                   f"CompressAI {architecture}, pretrained MSE weights (downloaded by CompressAI on first use)")

    @classmethod
    def from_checkpoint(cls, path: str | Path, architecture: str, name: str | None = None) -> CompressAICodec:
        """A CompressAI training checkpoint (``state_dict`` or ``{"state_dict": ...}``) as a one-quality codec."""

        def load(_quality: int) -> torch.nn.Module:
            from compressai.zoo.image import model_architectures

            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state)
            return model_architectures[architecture].from_state_dict(state)

        return cls(name or f"compressai-{Path(path).stem}", load, (1,), f"CompressAI {architecture} from {path}")

    def availability(self) -> Availability:
        if self._needs_compressai and not compressai_installed():
            return Availability(False, "install the 'compressai' extra (pip install 'icmkit[compressai]', numpy<2)")
        return Availability(True)

    def model(self, quality: int) -> tuple[torch.nn.Module, bytes]:
        with self._lock:
            if quality not in self._models:
                try:
                    model = self._loader(quality).eval()
                except (OSError, RuntimeError, KeyError) as exc:
                    raise CodecUnavailableError(f"{self.name}: cannot load weights ({exc})") from None
                model.update(force=True) if _accepts_force(model) else model.update()
                self._models[quality] = (model, weights_digest(model.state_dict()))
            return self._models[quality]

    def encode(self, image: np.ndarray, quality: int | None = None) -> bytes:
        self.require_available()
        image = check_rgb(image)
        quality = self.quality.validate(quality)
        model, digest = self.model(quality)
        height, width, _ = image.shape
        pad_bottom, pad_right = -height % PAD_MULTIPLE, -width % PAD_MULTIPLE
        x = F.pad(image_to_tensor(image), (0, pad_right, 0, pad_bottom), mode="replicate")
        with torch.no_grad():
            coded = model.compress(x)
        shape = tuple(coded["shape"])
        header = bitstream.IcmHeader(
            codec=self.name, quality=quality, digest=digest, width=width, height=height,
            pad_bottom=pad_bottom, pad_right=pad_right, extra=b"".join(encode_uv(s) for s in shape),
        )
        return bitstream.pack(header, [strings[0] for strings in coded["strings"]])

    def decode(self, data: bytes) -> np.ndarray:
        self.require_available()
        header, streams = bitstream.unpack(data, max_pixels=max_pixels())
        if header.codec != self.name:
            raise BitstreamError(f"stream was written by codec {header.codec!r}, not {self.name!r}")
        try:
            quality = self.quality.validate(header.quality)
        except QualityError:
            raise BitstreamError(f"stream uses quality {header.quality}, unknown to {self.name}") from None
        model, digest = self.model(quality)
        if header.digest != digest:
            raise WeightsMismatchError(f"stream was written with other weights (digest {header.digest.hex()})")
        try:
            h, pos = decode_uv(header.extra, 0)
            w, pos = decode_uv(header.extra, pos)
        except VarintError:
            raise BitstreamError("malformed latent shape in the .icm header") from None
        padded_h, padded_w = header.height + header.pad_bottom, header.width + header.pad_right
        if pos != len(header.extra) or h * PAD_MULTIPLE != padded_h or w * PAD_MULTIPLE != padded_w:
            raise BitstreamError("latent shape in the .icm header does not match the image size")
        with torch.no_grad():
            x_hat = model.decompress([[s] for s in streams], (h, w))["x_hat"]
        return tensor_to_image(x_hat[0, :, : header.height, : header.width])


def _accepts_force(model: torch.nn.Module) -> bool:
    import inspect

    return "force" in inspect.signature(model.update).parameters


def compressai_codecs() -> list[Callable[[], Codec]]:
    return [lambda arch=arch: CompressAICodec.from_zoo(arch) for arch in ZOO]
