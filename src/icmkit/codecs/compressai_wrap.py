"""CompressAI models and checkpoints as icmkit codecs (optional extra ``compressai``).

Any model with CompressAI's contract (``compress(x) -> {"strings", "shape"}``, ``decompress(strings,
shape)``, ``update()``) is wrapped: the image is padded to a multiple of 64 by edge replication, the
streams go into an ``.icm`` container whose header names the codec, the quality and the digest of
the weights, and the latent shape travels in the header's ``extra`` field. CompressAI's pretrained
zoo weights are downloaded on first use into torch hub's cache, from CompressAI's own URLs, and checked
against the SHA-256 prefix those URLs end in (``…-<sha256 prefix>.pth.tar``) on download and on every load.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from icmkit import bitstream
from icmkit.codecs.base import Availability, Codec
from icmkit.codecs.learned import IcmContainerCodec, tensor_to_image
from icmkit.errors import BitstreamError, CodecUnavailableError
from icmkit.varint import VarintError, decode_uv, encode_uv

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


class CompressAICodec(IcmContainerCodec):
    """Wraps CompressAI-contract models; ``loader(quality)`` returns the model for a quality.

    :meth:`from_zoo` and :meth:`from_checkpoint` build the usual ones.

    Args:
        name: The codec's name, recorded in every stream's header.
        loader: Returns the (not yet updated) model of a quality; called once per quality, on first use.
        qualities: The quality indices the codec offers.
        description: What the codec is, in a sentence or two (listed by ``icm codecs``).
        needs_compressai: Whether the codec is unavailable without the ``compressai`` package (``False``
            for models that only follow its contract, as in tests).
    """

    def __init__(
        self,
        name: str,
        loader: Callable[[int], torch.nn.Module],
        qualities: tuple[int, ...],
        description: str = "",
        needs_compressai: bool = True,
    ):
        super().__init__(name, qualities, description, "CompressAI zoo quality index, low → high rate")
        self._loader = loader
        self._needs_compressai = needs_compressai

    @classmethod
    def from_zoo(cls, architecture: str) -> CompressAICodec:
        function, qualities = ZOO[architecture]

        def load(quality: int) -> torch.nn.Module:
            from compressai.zoo.image import model_architectures, model_urls
            from compressai.zoo.pretrained import load_pretrained

            state = verified_state_dict(model_urls[architecture]["mse"][quality])
            return model_architectures[architecture].from_state_dict(load_pretrained(state))

        return cls(
            f"compressai-{architecture}",
            load,
            tuple(qualities),
            f"CompressAI {architecture}, pretrained MSE weights (downloaded once from CompressAI's URLs, "
            "SHA-256 checked)",
        )

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

    @staticmethod
    def stride(model: torch.nn.Module) -> int:
        return PAD_MULTIPLE

    def _load(self, quality: int) -> torch.nn.Module:
        try:
            model = self._loader(quality).eval()
        except (OSError, RuntimeError, KeyError) as exc:
            raise CodecUnavailableError(f"{self.name}: cannot load weights ({exc})") from None
        model.update(force=True) if _accepts_force(model) else model.update()
        return model

    def encode(self, image: np.ndarray, quality: int | None = None) -> bytes:
        coded, header = self._code(image, quality)
        extra = b"".join(encode_uv(s) for s in tuple(coded["shape"]))
        return bitstream.pack(replace(header, extra=extra), [strings[0] for strings in coded["strings"]])

    def decode(self, data: bytes) -> np.ndarray:
        header, streams, model = self._parse(data)
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


def verified_state_dict(url: str) -> dict:
    """A state dict from ``url`` via torch hub's cache, verified against the SHA-256 prefix in its file name
    (torch.hub's ``check_hash`` convention) — also when it is already cached, which torch.hub does not
    re-check — and read with ``weights_only`` (no pickled code runs)."""
    import hashlib

    import torch.hub as hub

    name = Path(urlparse(url).path).name
    match = hub.HASH_REGEX.search(name)
    if match is None or not match.group(1):
        raise CodecUnavailableError(f"{url}: no SHA-256 prefix in the file name; refusing unverifiable weights")
    prefix = match.group(1)
    path = Path(hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=False)  # verifies, then renames
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(prefix):
        raise CodecUnavailableError(
            f"{path}: SHA-256 {digest[: len(prefix)]}… does not match {prefix} from its URL "
            "(corrupt or replaced); delete it to download it again"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def _accepts_force(model: torch.nn.Module) -> bool:
    import inspect

    return "force" in inspect.signature(model.update).parameters


def compressai_codecs() -> list[Callable[[], Codec]]:
    return [lambda arch=arch: CompressAICodec.from_zoo(arch) for arch in ZOO]
