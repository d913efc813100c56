"""Speed and rate of icmkit's default learned codec next to CompressAI's MeanScaleHyperprior(128, 192).

Both are measured in the same process on the same 768×512 photo with the same torch thread count, so
the ratio is meaningful on any machine. CompressAI is optional (``pip install -e '.[compressai]'``,
best in its own virtual environment since it pins numpy<2); without it only icmkit is measured.
CompressAI's pretrained weights need a download, so by default its model runs on random weights:
its timings are real (the transforms dominate), its bpp/PSNR are then not meaningful and not shown.

It also measures the peak memory of coding a 3840×2160 image: the encode and the decode each run in a
fresh child process, which reports its peak resident set size (torch's allocations are invisible to
tracemalloc). A child that only loads the codec gives the fixed part.

    python benchmarks/speed.py [--image PHOTO] [--repeats 5] [--threads 2] [--no-4k] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import icmkit
from icmkit.codecs.learned import VariableRatePixelCodec
from icmkit.data import sample_path
from icmkit.layers.integer import reference_convolutions


def load_photo(path: str | None) -> tuple[np.ndarray, str]:
    if path:
        return icmkit.read_image(path), path
    return resized_sample(768, 512), "coffee.png resized to 768×512"  # Kodak's size


def resized_sample(width: int, height: int) -> np.ndarray:
    # The bundled CC0 coffee photo (600×400), bicubic-resized.
    image = Image.open(sample_path("coffee.png")).convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image)


def timed(fn, repeats: int):
    fn()  # warm-up: model loading, allocator, thread pool
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def measure_icmkit(image: np.ndarray, codec_name: str, quality: float | None, repeats: int) -> dict:
    codec = icmkit.get_codec(codec_name)
    quality = codec.quality.validate(quality)
    data, encode_s = timed(lambda: codec.encode(image, quality), repeats)
    decoded, decode_s = timed(lambda: codec.decode(data), repeats)
    return {
        "codec": f"icmkit {codec_name} q{quality}",
        "bytes": len(data),
        "bpp": icmkit.bits_per_pixel(len(data), image.shape),
        "psnr": icmkit.psnr(image, decoded),
        "encode_s": encode_s,
        "decode_s": decode_s,
    }


def measure_compressai(image: np.ndarray, repeats: int, pretrained_quality: int | None) -> dict | None:
    try:
        from compressai.models import MeanScaleHyperprior
    except ImportError:
        return None
    if pretrained_quality:
        from compressai.zoo import mbt2018_mean

        model, label = mbt2018_mean(quality=pretrained_quality, pretrained=True), f"q{pretrained_quality} pretrained"
    else:
        torch.manual_seed(0)
        model, label = MeanScaleHyperprior(128, 192), "random weights"
    model = model.eval()
    model.update(force=True)
    height, width = image.shape[:2]
    x = torch.from_numpy(image.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255
    x = F.pad(x, (0, -width % 64, 0, -height % 64))
    with torch.no_grad():
        coded, encode_s = timed(lambda: model.compress(x), repeats)
        out, decode_s = timed(lambda: model.decompress(coded["strings"], coded["shape"]), repeats)
    size = sum(len(s[0]) for s in coded["strings"])
    result = {
        "codec": f"CompressAI MeanScaleHyperprior(128,192) {label}",
        "bytes": size,
        "encode_s": encode_s,
        "decode_s": decode_s,
    }
    if pretrained_quality:
        decoded = (out["x_hat"][0, :, :height, :width].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        result.update(bpp=8 * size / (height * width), psnr=icmkit.psnr(image, decoded))
    return result


UHD = (3840, 2160)
MEMORY_LIMIT_GB = 4.0


def _loaded_codec(codec_name: str, quality: int | None):
    codec = icmkit.get_codec(codec_name)
    codec.model(codec.quality.validate(quality))  # load the weights before any timing
    return codec


def _load_only(codec_name: str, quality: int | None, stream_path: str) -> dict:
    _loaded_codec(codec_name, quality)
    return {}


def _encode_uhd(codec_name: str, quality: int | None, stream_path: str) -> dict:
    codec, image = _loaded_codec(codec_name, quality), resized_sample(*UHD)
    start = time.perf_counter()
    data = codec.encode(image, quality)
    seconds = time.perf_counter() - start
    Path(stream_path).write_bytes(data)
    return {"seconds": seconds, "bytes": len(data)}


def _decode_uhd(codec_name: str, quality: int | None, stream_path: str) -> dict:
    codec, data = _loaded_codec(codec_name, quality), Path(stream_path).read_bytes()
    start = time.perf_counter()
    codec.decode(data)
    return {"seconds": time.perf_counter() - start}


def peak_rss_gb() -> float:
    """This process's peak resident set size.

    Linux's VmHWM where there is one: ``ru_maxrss`` survives the fork + exec that starts a spawned child,
    so there it never reads below the parent's own peak (checked: a child of a 1 GB parent read 1 GB).
    """
    status = Path("/proc/self/status")
    if status.exists():
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024 / 1e9  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e9  # bytes on macOS


def _child(step, threads: int, args: tuple, connection) -> None:
    torch.set_num_threads(threads)
    result = step(*args)
    result["peak_rss_gb"] = peak_rss_gb()
    connection.send(result)


def in_fresh_process(step, threads: int, *args) -> dict:
    """``step(*args)`` in a new interpreter (spawned, so it inherits no memory), plus its peak RSS."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(step, threads, args, sender))
    process.start()
    result = receiver.recv()
    process.join()
    return result


def measure_uhd_memory(codec_name: str, quality: int | None, threads: int) -> dict:
    """Peak RSS of loading the codec, of encoding and of decoding a 3840×2160 photo, each in its own process."""
    with tempfile.TemporaryDirectory() as folder:
        args = (codec_name, quality, str(Path(folder) / "uhd.icm"))
        steps = {"load": _load_only, "encode": _encode_uhd, "decode": _decode_uhd}  # decode reads encode's file
        return {name: in_fresh_process(step, threads, *args) for name, step in steps.items()}


def print_speed_table(rows: list[dict], reference: dict | None, source: str, image: np.ndarray, args) -> None:
    print(
        f"image: {source} ({image.shape[1]}×{image.shape[0]}), torch threads: {args.threads}, "
        f"median of {args.repeats} runs"
    )
    print(f"{'codec':58s} {'bytes':>8s} {'bpp':>7s} {'PSNR':>7s} {'enc s':>7s} {'dec s':>7s}")
    for row in rows:
        bpp = f"{row['bpp']:.4f}" if "bpp" in row else "n/a"
        quality = f"{row['psnr']:.2f}" if "psnr" in row else "n/a"
        print(
            f"{row['codec']:58s} {row['bytes']:8d} {bpp:>7s} {quality:>7s} "
            f"{row['encode_s']:7.3f} {row['decode_s']:7.3f}"
        )
    if reference:
        print(
            f"speed-up vs CompressAI: encode {reference['encode_s'] / rows[0]['encode_s']:.2f}×, "
            f"decode {reference['decode_s'] / rows[0]['decode_s']:.2f}×"
        )
    else:
        print("CompressAI not installed: pip install -e '.[compressai]' (in its own venv) to compare")


def print_memory_table(memory: dict, codec_label: str, threads: int) -> None:
    print(
        f"\n{codec_label}, {UHD[0]}×{UHD[1]} (coffee.png resized), each step in a fresh process, "
        f"torch threads: {threads}"
    )
    print(f"{'step':8s} {'peak RSS (GB)':>14s} {'time (s)':>9s}")
    for name, row in memory.items():
        seconds = f"{row['seconds']:.2f}" if "seconds" in row else "—"
        print(f"{name:8s} {row['peak_rss_gb']:14.2f} {seconds:>9s}")
    worst = max(row["peak_rss_gb"] for row in memory.values())
    print(f"peak {worst:.2f} GB: {'within' if worst < MEMORY_LIMIT_GB else 'OVER'} the {MEMORY_LIMIT_GB:.0f} GB budget")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="photo to code (default: bundled coffee.png resized to 768×512)")
    parser.add_argument("--codec", default=icmkit.DEFAULT_CODEC)
    parser.add_argument("--quality", type=float, help="the codec's quality (default: its default)")
    parser.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="LABEL=FILE",
        help="also time a variable-rate weights file at the same quality (e.g. the no-context ablation)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--compressai-pretrained",
        type=int,
        metavar="Q",
        help="use CompressAI's pretrained mbt2018-mean at quality Q (downloads weights)",
    )
    parser.add_argument("--no-4k", action="store_true", help="skip the 3840×2160 peak-memory measurement")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image, source = load_photo(args.image)
    rows = [measure_icmkit(image, args.codec, args.quality, args.repeats)]
    with reference_convolutions():  # the same codec, its integer networks in float64: what the int8 path replaced
        reference_path = measure_icmkit(image, args.codec, args.quality, args.repeats)
    if reference_path["bytes"] != rows[0]["bytes"] or reference_path["psnr"] != rows[0]["psnr"]:
        raise SystemExit("the integer fast path and the float64 reference disagree: a bug")
    rows.append({**reference_path, "codec": reference_path["codec"] + " (float64 integer nets)"})
    for item in args.weights:
        label, _, path = item.partition("=")
        icmkit.register_codec(VariableRatePixelCodec.from_weights_file(path, name=label))
        rows.append(measure_icmkit(image, label, args.quality, args.repeats))
    reference = measure_compressai(image, args.repeats, args.compressai_pretrained)
    if reference:
        rows.append(reference)
    print_speed_table(rows, reference, source, image, args)
    print(
        f"int8 integer path vs float64 (same bytes, same pixels): encode "
        f"{reference_path['encode_s'] / rows[0]['encode_s']:.2f}×, "
        f"decode {reference_path['decode_s'] / rows[0]['decode_s']:.2f}×"
    )
    memory = None if args.no_4k else measure_uhd_memory(args.codec, args.quality, args.threads)
    if memory:
        print_memory_table(memory, rows[0]["codec"], args.threads)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "image": source,
                    "threads": args.threads,
                    "repeats": args.repeats,
                    "results": rows,
                    "memory_3840x2160": memory,
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
