"""Why icm-dicm-lite0 splits EfficientNet-Lite0 after blocks.2 (stride 8) rather than blocks.1 (stride 4).

For each split, in the same run: the feature map of a 256² crop (channels × size, values to code), the
head's and the tail's time, the time of one training step of the codec (forward + backward, batch 8,
random weights) and its encode / decode time on one crop — the codec built from configs/icm-dicm-lite0.yaml
with the split swapped. Medians of ``--repeats`` runs; ratios stride-4 / stride-8.

    python benchmarks/split_choice.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from icmkit.backbones import split_classifier
from icmkit.train.builders import build_codec_model
from icmkit.train.config import load_config

CONFIG = Path(__file__).parents[1] / "configs" / "icm-dicm-lite0.yaml"


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(stage: str, repeats: int) -> dict:
    config = load_config(CONFIG, [f"split={stage}", "data=."])
    backbone = split_classifier(config.model.backbone, stage)
    torch.manual_seed(0)
    model = build_codec_model(config, backbone)
    crop = torch.rand(1, 3, 256, 256)
    batch = torch.rand(8, 3, 256, 256)
    with torch.no_grad():
        features = backbone.features(crop)
        head_s = median_seconds(lambda: backbone.features(crop), repeats)
        tail_s = median_seconds(lambda: backbone.tail(features), repeats)
        batch_features = backbone.features(batch)
    model.set_feature_statistics(batch_features)

    def training_step():
        output = model(batch_features, 0)
        loss = sum(-torch.log2(v).sum() for v in output["likelihoods"].values()) + output["f_hat"].square().mean()
        loss.backward()

    model.train()
    step_s = median_seconds(training_step, max(2, repeats // 2))
    model.eval()
    model.update()
    coded = model.compress(features)
    encode_s = median_seconds(lambda: model.compress(features), repeats)
    decode_s = median_seconds(lambda: model.decompress(coded["strings"], coded["shape"]), repeats)
    return {
        "stage": stage,
        "shape": tuple(features.shape[1:]),
        "values": features.numel(),
        "head_ms": 1e3 * head_s,
        "tail_ms": 1e3 * tail_s,
        "train_step_s": step_s,
        "codec_encode_ms": 1e3 * encode_s,
        "codec_decode_ms": 1e3 * decode_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(stage, args.repeats) for stage in ("blocks.1", "blocks.2")]
    keys = ["values", "head_ms", "tail_ms", "train_step_s", "codec_encode_ms", "codec_decode_ms"]
    print(f"256² crop, torch threads {args.threads}, medians of {args.repeats}")
    print(f"{'split':9s} {'features':>12s} " + " ".join(f"{k:>15s}" for k in keys))
    for row in rows:
        shape = "×".join(map(str, row["shape"]))
        print(f"{row['stage']:9s} {shape:>12s} " + " ".join(f"{row[k]:15.3f}" for k in keys))
    print(f"{'ratio 4/8':9s} {'':>12s} " + " ".join(f"{rows[0][k] / rows[1][k]:15.2f}" for k in keys))


if __name__ == "__main__":
    main()
