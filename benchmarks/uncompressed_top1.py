"""Top-1 / top-5 of classifiers on the uncompressed codec inputs of a labelled folder (the ceiling of a bench).

    python benchmarks/uncompressed_top1.py ../shared/data/imagenet-dev200 [--models tf_efficientnet_lite0,...]

Images get the classification protocol of ``icm bench`` (Resize 256 + CenterCrop 256); each classifier then applies
its own preprocessing, as it does to decoded crops.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from icmkit.bench.datasets import classification
from icmkit.bench.runner import prepare
from icmkit.pretrained.classifiers import load_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--models", default="tf_efficientnet_lite0,tf_efficientnet_lite1,tf_efficientnet_lite2")
    args = parser.parse_args()
    samples = classification(args.data).samples
    images = [prepare(s, "classify", 256) for s in samples]
    labels = np.array([s.label for s in samples])
    for name in args.models.split(","):
        top = load_classifier(name, "default").topk(images, k=5)
        print(
            f"{name}: top-1 {100 * np.mean(top[:, 0] == labels):.1f} %, "
            f"top-5 {100 * np.mean((top == labels[:, None]).any(1)):.1f} % ({len(samples)} images)"
        )


if __name__ == "__main__":
    main()
