"""The golden test vectors of every shipped zoo family: how they are made, and what ``tests/test_golden.py`` checks.

For each family in the zoo (``src/icmkit/zoo/*.json``) it codes one small crop of a bundled photo at the
family's codec's default quality, writes ``tests/data/golden/<family>-q<quality>.icm`` and records in
``tests/data/golden/manifest.json`` the SHA-256 of the stream and of its decoded output (pixels: the
``H×W×3`` uint8 bytes; features: the ``(1, C, h, w)`` float32 bytes, little-endian). A restoration filter's family
(``hevc444-mmd``) holds its base codec's stream and the composed codec's restored output (and the codec's name:
the stream alone names its base). ``tests/test_golden.py`` decodes every file and compares the hash.

Regenerate only when a change of the coder or of the shipped weights is intended (new weights, a new family,
a deliberate format or decoder change) — then review the diff of the manifest and commit it::

    .venv/bin/python scripts/make_golden.py [--out tests/data/golden]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "data" / "golden"
MANIFEST = "manifest.json"
CROP = {"photo": "chelsea.png", "top": 40, "left": 60, "height": 80, "width": 96}  # padded on both sides


def decoded_bytes(output) -> bytes:
    """What a decoder's output hashes as: pixel bytes, or the feature tensor's float32 little-endian bytes."""
    from icmkit.codecs.base import FEATURES, FeatureMaps

    if isinstance(output, FeatureMaps):
        tensor = output.tensors[FEATURES].detach().to("cpu").contiguous()
        return tensor.numpy().astype("<f4").tobytes()
    return np.ascontiguousarray(output, dtype=np.uint8).tobytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def golden_families() -> list[str]:
    """Every zoo family with weights in this installation."""
    from icmkit.zoo import families, family

    return [name for name in families() if family(name)]


def codec_of(family_name: str):
    """The codec a zoo family's weights serve: the family's name, or the composed codec over a filter family."""
    import icmkit
    from icmkit.codecs.registry import list_codecs

    found = [c for c in list_codecs() if getattr(c, "family", None) == family_name]
    return found[0] if found else icmkit.get_codec(family_name)


def crop() -> np.ndarray:
    from PIL import Image

    from icmkit.data import sample_path

    image = np.asarray(Image.open(sample_path(CROP["photo"])).convert("RGB"))
    return np.ascontiguousarray(
        image[CROP["top"] : CROP["top"] + CROP["height"], CROP["left"] : CROP["left"] + CROP["width"]]
    )


def make(out: Path) -> dict:
    import torch

    from icmkit.zoo import family

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    image = crop()
    manifest = {"crop": CROP, "families": {}}
    for name in golden_families():
        codec = codec_of(name)
        if hasattr(codec, "for_full_image"):  # feature codecs: the crop as it is (the stream the vectors hold)
            codec = codec.for_full_image()
        quality = codec.quality.default
        stream = codec.encode(image, quality)
        decoded = codec.decode(stream)
        shape = list(getattr(decoded, "shape", None) or decoded.tensors["features"].shape)
        file = f"{name}-q{quality}.icm"
        for old in out.glob(f"{name}-q*.icm"):
            old.unlink()
        (out / file).write_bytes(stream)
        entries = family(name)  # a filter family has one entry for every quality of its base codec
        weights = next((e for e in entries if e.quality == quality), entries[0])
        manifest["families"][name] = {
            **({"codec": codec.name} if codec.name != name else {}),
            "file": file,
            "quality": quality,
            "weights_file": weights.file,
            "stream_bytes": len(stream),
            "stream_sha256": sha256(stream),
            "decoded_shape": shape,
            "decoded_sha256": sha256(decoded_bytes(decoded)),
        }
        print(f"{name}: {file}, {len(stream)} bytes, decoded {shape}")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=GOLDEN_DIR, help=f"folder (default {GOLDEN_DIR})")
    make(parser.parse_args(argv).out)
