"""Speed of the receiver-side restoration filters against their base codec's decode, in the same run.

    python benchmarks/restoration_speed.py [--filter hevc444:mmd=RUN/final.safetensors ...] [--threads 2] \
        [--repeats 7] [--json out.json]

For each composed codec, on a 256² crop and on a 768×512 photo (coffee.png resized, Kodak's size): the base
codec's decode time, the filter's time (``RestoredCodec.restore``: the filter alone), and their ratio; medians of
``--repeats`` runs after a warm-up, torch limited to ``--threads``. Issue 21's targets: the filter adds ≤ 1× the
HEVC-444 decode at 768×512 and ≤ 15 ms at 256². It also checks that restored output is identical with 1 and
``--threads`` threads (the tile grid depends on the image size alone; a convolution's summation order may not).
Without ``--filter`` it measures the registered composed codecs (the shipped filters); a filter file is measured
as ``BASE+FILE`` behind its base codec.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from icmkit.codecs.registry import get_codec, list_codecs
from icmkit.codecs.restored import RestoredCodec
from icmkit.data import sample_path


def photo(width: int, height: int) -> np.ndarray:
    with Image.open(sample_path("coffee.png")) as image:
        return np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC))


def median_ms(work, repeats: int) -> float:
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def _same(row: dict) -> str:
    if row["identical_across_threads"]:
        return "yes"
    return f"no: {row['samples_differing']} of {row['samples']:,} samples, by ≤ {row['largest_difference']}"


def measure(codec, threads: int, repeats: int) -> list[dict]:
    quality = {"hevc444": 32, "jpeg": 50}.get(codec.base.name, codec.quality.default)
    codec.filters()  # loaded before timing
    rows = []
    for label, image in (("256x256", photo(256, 256)), ("768x512", photo(768, 512))):
        stream = codec.base.encode(image, quality)
        decoded = codec.base.decode(stream)
        condition = codec.stream_quality(stream)
        torch.set_num_threads(1)
        single = codec.restore(decoded, condition)
        torch.set_num_threads(threads)
        difference = np.abs(single.astype(np.int16) - codec.restore(decoded, condition))
        same = not difference.any()
        base_ms = median_ms(lambda s=stream: codec.base.decode(s), repeats)
        filter_ms = median_ms(lambda d=decoded, c=condition: codec.restore(d, c), repeats)
        rows.append(
            {
                "codec": codec.name,
                "size": label,
                "quality": quality,
                "threads": threads,
                "base_decode_ms": round(base_ms, 2),
                "filter_ms": round(filter_ms, 2),
                "filter_over_base_decode": round(filter_ms / base_ms, 2),
                "identical_across_threads": same,
                "samples_differing": int((difference > 0).sum()),
                "samples": int(difference.size),
                "largest_difference": int(difference.max()),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--filter", action="append", default=[], metavar="BASE:LABEL=FILE", help="a filter file, measured as BASE+LABEL"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    codecs = [c for c in list_codecs() if isinstance(c, RestoredCodec)]
    for item in args.filter:  # BASE:LABEL=FILE[,FILE…], as benchmarks/restoration_evidence.py takes it
        spec, _, paths = item.partition("=")
        base, _, label = spec.partition(":")
        files = [Path(p) for p in paths.split(",")]
        codecs.append(RestoredCodec(get_codec(base), files, name=f"{base}+{label or 'filter'}"))
    if not codecs:
        raise SystemExit("no composed codec is registered: name filter files with --filter BASE:LABEL=FILE")
    rows = [row for codec in codecs for row in measure(codec, args.threads, args.repeats)]
    print("| codec | size | base decode | filter | filter / base decode | same output with 1 thread |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['codec']} | {r['size']} | {r['base_decode_ms']:.1f} ms | {r['filter_ms']:.1f} ms | "
            f"{r['filter_over_base_decode']:.2f}× | {_same(r)} |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"threads": args.threads, "rows": rows}, handle, indent=1)
            handle.write("\n")


if __name__ == "__main__":
    main()
