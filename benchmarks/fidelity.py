"""Mean bpp and PSNR of codecs over a folder of images under the ICM classification protocol
(Resize 256 + CenterCrop 256, bpp over the 256² coded pixels). A small stand-in until `icm bench`.

    python benchmarks/fidelity.py [--data DIR] [--codecs icm-mse:3,jpeg:10,30,hevc444:42,37] [--limit N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import icmkit
from icmkit.bench.datasets import image_folder
from icmkit.bench.protocols import resize_center_crop

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-dev200"


def parse_codecs(text: str) -> list[tuple[str, list[int]]]:
    """``name:q1,q2,name2:q`` → [(name, [q1, q2]), (name2, [q])]."""
    plan: list[tuple[str, list[int]]] = []
    for token in text.split(","):
        name, sep, quality = token.partition(":")
        if sep:
            plan.append((name, [int(quality)]))
        else:
            plan[-1][1].append(int(token))
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--codecs", default="icm-mse:3,jpeg:10,20,30,50,webp:10,30,50,hevc444:47,42,37,32")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    samples = image_folder(Path(args.data)).limit(args.limit).samples
    images = [resize_center_crop(icmkit.read_image(s.path)) for s in samples]
    print(f"{len(images)} images from {args.data}, Resize 256 + CenterCrop 256")
    print(f"{'codec':10s} {'q':>4s} {'bpp':>7s} {'PSNR':>7s}")
    for name, qualities in parse_codecs(args.codecs):
        codec = icmkit.get_codec(name)
        for quality in qualities:
            bpps, psnrs = [], []
            for image in images:
                data = codec.encode(image, quality)
                bpps.append(8 * len(data) / (256 * 256))
                psnrs.append(icmkit.psnr(image, codec.decode(data)))
            print(f"{name:10s} {quality:4d} {np.mean(bpps):7.4f} {np.mean(psnrs):7.2f}")


if __name__ == "__main__":
    main()
