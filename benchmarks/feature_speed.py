"""Speed of the feature codec next to HEVC-444, measured in the same run on the same crop.

Feature encode = head + RE + analysis + entropy coding + container; feature decode = entropy decoding +
synthesis (no tail; the tail's time is printed apart). HEVC-444 encodes the same 256² crop at the QP whose
top-1 equals the feature codec's (read it off `icm bench`'s summary: ``--hevc-qp``). Medians of
``--repeats`` runs after a warm-up, then the ratio; then a 1024×768 image, and the peak resident memory
of encoding and decoding it, each in a fresh process.

    python benchmarks/feature_speed.py [--codec icm-dicm-lite0] [--quality Q] [--hevc-qp 27] [--repeats 7]
                                       [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from speed import in_fresh_process, resized_sample, timed  # noqa: E402 (the sibling benchmark's helpers)

import icmkit  # noqa: E402
from icmkit.bench.protocols import resize_center_crop  # noqa: E402
from icmkit.image import image_to_tensor  # noqa: E402
from icmkit.layers.integer import reference_convolutions  # noqa: E402

LARGE = (1024, 768)


def _loaded(codec_name: str, quality: int | None):
    codec = icmkit.get_codec(codec_name)
    quality = codec.quality.validate(quality)
    codec.model(quality)
    return codec, quality


def _encode_large(codec_name: str, quality: int | None, stream_path: str) -> dict:
    codec, quality = _loaded(codec_name, quality)
    image = resized_sample(*LARGE)
    start = time.perf_counter()
    data = codec.encode(image, quality)
    seconds = time.perf_counter() - start
    Path(stream_path).write_bytes(data)
    return {"seconds": seconds, "bytes": len(data), "bpp": icmkit.bits_per_pixel(len(data), image.shape)}


def _decode_large(codec_name: str, quality: int | None, stream_path: str) -> dict:
    codec, _ = _loaded(codec_name, quality)
    data = Path(stream_path).read_bytes()
    start = time.perf_counter()
    codec.decode(data)
    return {"seconds": time.perf_counter() - start}


def measure(args) -> dict:
    crop = resize_center_crop(resized_sample(600, 400), 256)
    codec, quality = _loaded(args.codec, args.quality)
    data, encode_s = timed(lambda: codec.encode(crop, quality), args.repeats)
    features, decode_s = timed(lambda: codec.decode(data), args.repeats)
    with reference_convolutions():  # the same codec with its integer networks in float64 (the reference path)
        reference_data, reference_encode_s = timed(lambda: codec.encode(crop, quality), args.repeats)
        reference_features, reference_decode_s = timed(lambda: codec.decode(data), args.repeats)
    if reference_data != data or not torch.equal(reference_features.tensors["features"], features.tensors["features"]):
        raise SystemExit("the integer fast path and the float64 reference disagree: a bug")
    backbone = codec.backbone(codec.model(quality)[0])
    x = image_to_tensor(crop).unsqueeze(0)
    head = codec.encoder_head(backbone)  # the head as the encoder runs it: batch norms folded, channels last
    with torch.no_grad():
        normalized = backbone.normalize(x).contiguous(memory_format=torch.channels_last)
        _, head_s = timed(lambda: head(normalized), args.repeats)
        _, trained_head_s = timed(lambda: backbone.features(x), args.repeats)
        _, tail_s = timed(lambda: backbone.tail(features.tensors["features"]), args.repeats)
    hevc = icmkit.get_codec("hevc444")
    hevc_data, hevc_encode_s = timed(lambda: hevc.encode(crop, args.hevc_qp), args.repeats)
    _, hevc_decode_s = timed(lambda: hevc.decode(hevc_data), args.repeats)
    return {
        "feature": {
            "codec": f"{args.codec} q{quality}",
            "bytes": len(data),
            "bpp": 8 * len(data) / 65536,
            "encode_s": encode_s,
            "decode_s": decode_s,
            "head_s": head_s,
            "trained_head_s": trained_head_s,
            "tail_s": tail_s,
            "reference_encode_s": reference_encode_s,
            "reference_decode_s": reference_decode_s,
        },
        "hevc444": {
            "codec": f"hevc444 qp{args.hevc_qp}",
            "bytes": len(hevc_data),
            "bpp": 8 * len(hevc_data) / 65536,
            "encode_s": hevc_encode_s,
            "decode_s": hevc_decode_s,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default="icm-dicm-lite0")
    parser.add_argument("--quality", type=int)
    parser.add_argument("--hevc-qp", type=int, default=27, help="HEVC-444 QP of equal top-1 (from icm bench)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-large", action="store_true", help="skip the 1024×768 image and its peak memory")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--machine", default="", help="what ran it, in words, for the JSON")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")
    torch.set_num_threads(args.threads)
    result = measure(args)
    feature, hevc = result["feature"], result["hevc444"]
    print(f"256×256 crop (bundled coffee.png), torch threads: {args.threads}, median of {args.repeats} runs")
    print(f"{'codec':28s} {'bytes':>7s} {'bpp':>7s} {'enc ms':>8s} {'dec ms':>8s}")
    for row in (feature, hevc):
        print(
            f"{row['codec']:28s} {row['bytes']:7d} {row['bpp']:7.4f} {1e3 * row['encode_s']:8.1f} "
            f"{1e3 * row['decode_s']:8.1f}"
        )
    print(
        f"integer networks in float64 (the reference path, same streams): encode "
        f"{1e3 * feature['reference_encode_s']:.1f} ms, decode {1e3 * feature['reference_decode_s']:.1f} ms; "
        f"the int8 fast path is {feature['reference_encode_s'] / feature['encode_s']:.2f}× / "
        f"{feature['reference_decode_s'] / feature['decode_s']:.2f}× as fast"
    )
    print(
        f"of the encode, the backbone's head: {1e3 * feature['head_s']:.1f} ms (folded, channels last; as trained "
        f"{1e3 * feature['trained_head_s']:.1f} ms); "
        f"tail on the decoded features: {1e3 * feature['tail_s']:.1f} ms"
    )
    ratio = hevc["encode_s"] / feature["encode_s"]
    result["encode_speedup_vs_hevc444"] = ratio
    print(
        f"feature encode {1e3 * feature['encode_s']:.1f} ms ({'≤' if feature['encode_s'] <= 0.06 else '>'} 60 ms), "
        f"{ratio:.2f}× faster than HEVC-444's encode ({'≥' if ratio >= 3 else '<'} 3×); feature decode "
        f"{1e3 * feature['decode_s']:.1f} ms ({'≤' if feature['decode_s'] <= 0.01 else '>'} 10 ms)"
    )
    if not args.no_large:
        with tempfile.TemporaryDirectory() as folder:
            stream = str(Path(folder) / "large.icm")
            large = {
                name: in_fresh_process(step, args.threads, args.codec, args.quality, stream)
                for name, step in (("encode", _encode_large), ("decode", _decode_large))
            }
        result["large"] = large
        print(f"\n{LARGE[0]}×{LARGE[1]} (coffee.png resized), each step in a fresh process:")
        for name, row in large.items():
            print(
                f"{name:8s} {row['seconds']:.3f} s, peak RSS {row['peak_rss_gb']:.2f} GB"
                + (f", {row['bpp']:.4f} bpp" if "bpp" in row else "")
            )
    if args.json:
        result["date"] = time.strftime("%Y-%m-%d")
        result["machine"] = args.machine
        result["command"] = "python benchmarks/feature_speed.py " + " ".join(sys.argv[1:])
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
