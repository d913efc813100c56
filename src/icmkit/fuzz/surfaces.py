"""The fuzzer's other surfaces: every input a user hands icmkit besides a stream.

========== ==============================================================================================
target     a case
========== ==============================================================================================
``image``  a conventional image to ``icmkit.compress(…, codec="jpeg")``: PNG, 16-bit PNG, APNG, baseline and
           progressive JPEG, multi-page TIFF, animated GIF and WebP, AVIF, BMP, PPM — mutated bytes, or a
           structured edit: canvas sizes in IHDR / SOF / ``ispe``, APNG frame counts, repeated JPEG scans (a scan
           bomb), TIFF pages; plus images at and just above the pixel limit
``special`` a device file (``/dev/zero``, ``/dev/urandom``, ``/dev/null``), a FIFO nobody writes, a folder, or a
           link to a device, given to every command's reader (compress, decompress, predict, features, config,
           ``icm bd``, ``--codec FILE``)
``weights`` a small weights file, crafted, as ``--codec FILE`` (``codec_from_weights_file``), then an encode
           and a decode: config values, metadata, tensor values (NaN, ∞, negative or unnormalised tables, a falling
           scale table, huge shifts), dtypes, shapes, missing and extra tensors, bytes
``yaml``   a training config (:func:`icmkit.train.config.load_config`): the shipped configs' fields with hostile
           values, aliases and anchors ("billion laughs"), deep nesting, tags, long values, mutated bytes
``bd``     ``icm bd``'s inputs (:func:`icmkit.bench.results.load_curves` and :func:`icmkit.bench.bd.bd`): CompressAI
           JSON and summary CSV with NaN, ∞, negative, falling and duplicate points, deep nesting, wrong types
``featlimit`` features files (``icm predict FILE``) declaring images at and above the pixel limit, in float32,
           float16 and 8-bit floats, whole or with their data cut short
========== ==============================================================================================

Each surface has a ``prepare(workdir)`` (its seeds, built once per worker) and a ``case(state, rng)`` that returns
a recipe and a callable; the callable returning is ``decoded`` (accepted), an :class:`~icmkit.errors.IcmError` is
``clean``.
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import zlib
from pathlib import Path

SURFACES = ("image", "special", "weights", "yaml", "bd", "featlimit")


def _generic(rng: random.Random, data: bytes, seed: int, index: int) -> tuple[bytes, str]:
    from icmkit.fuzz.streams import mutate

    mutated, recipe = mutate({"x": [data]}, "x", seed, index)
    return mutated, recipe


# -- images ------------------------------------------------------------------------------------------
def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _zero_png(width: int, height: int) -> bytes:
    """A grey PNG of any size, written without holding its pixels (the IDAT streams a zero row per row)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes(width * 3)
    parts = [compressor.compress(row) for _ in range(height)]
    idat = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _image_seeds() -> dict[str, bytes]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    image = Image.fromarray(base)
    frames = [Image.fromarray(np.roll(base, 7 * i, axis=1)) for i in range(4)]
    seeds = {}

    def save(name, img, **options):
        buffer = io.BytesIO()
        img.save(buffer, **options)
        seeds[name] = buffer.getvalue()

    save("png", image, format="PNG")
    save("png16", Image.fromarray(base[..., 0].astype(np.uint16) * 257), format="PNG")
    save("apng", frames[0], format="PNG", save_all=True, append_images=frames[1:], duration=40)
    save("jpeg", image, format="JPEG", quality=80)
    save("jpeg-progressive", image, format="JPEG", quality=80, progressive=True)
    save("tiff-pages", frames[0], format="TIFF", save_all=True, append_images=frames[1:])
    save("gif", frames[0], format="GIF", save_all=True, append_images=frames[1:])
    save("webp-animated", frames[0], format="WEBP", save_all=True, append_images=frames[1:])
    save("bmp", image, format="BMP")
    save("ppm", image, format="PPM")
    try:
        save("avif", image, format="AVIF", quality=60)
    except (KeyError, OSError, ValueError):  # a Pillow without AVIF
        pass
    return seeds


def _edit_png_size(data: bytes, width: int, height: int) -> bytes:
    start = data.index(b"IHDR") - 4
    body = bytearray(data[start + 8 : start + 8 + 13])
    body[0:8] = struct.pack(">II", width & 0xFFFFFFFF, height & 0xFFFFFFFF)
    return data[:start] + _png_chunk(b"IHDR", bytes(body)) + data[start + 8 + 13 + 4 :]


def _edit_apng_frames(data: bytes, frames: int) -> bytes:
    at = data.find(b"acTL")
    if at < 0:
        return data
    body = struct.pack(">II", frames & 0xFFFFFFFF, 0)
    return data[: at - 4] + _png_chunk(b"acTL", body) + data[at + 4 + 8 + 4 :]


def _edit_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            return data[: at + 5] + struct.pack(">HH", height & 0xFFFF, width & 0xFFFF) + data[at + 9 :]
    return data


def _jpeg_scan_bomb(data: bytes, copies: int) -> bytes:
    """The first scan (SOS … next marker) repeated ``copies`` times: libjpeg decodes every one of them."""
    at = data.find(b"\xff\xda")
    if at < 0:
        return data
    end = at + 2
    while end < len(data) - 1 and not (
        data[end] == 0xFF and data[end + 1] not in (0x00,) and not 0xD0 <= data[end + 1] <= 0xD7
    ):
        end += 1
    return data[:at] + data[at:end] * copies + data[end:]


def _edit_ispe(data: bytes, width: int, height: int) -> bytes:
    at = data.find(b"ispe")
    if at < 0:
        return data
    return data[: at + 8] + struct.pack(">II", width & 0xFFFFFFFF, height & 0xFFFFFFFF) + data[at + 16 :]


def _tiff_many_pages(pages: int) -> bytes:
    from PIL import Image

    frame = Image.new("RGB", (8, 8), (10, 20, 30))
    buffer = io.BytesIO()
    frame.save(buffer, format="TIFF", save_all=True, append_images=[frame] * (pages - 1))
    return buffer.getvalue()


_HOSTILE_SIDES = (0, 1, 7, 8192, 8193, 16384, 65535, 1 << 20, (1 << 31) - 1, 1 << 31)


def _prepare_image(workdir: Path) -> dict:
    from icmkit.limits import max_pixels

    side = int(max_pixels() ** 0.5)
    return {
        "seeds": _image_seeds(),
        # At and just above the pixel limit: real, decodable, grey images (built once; ~100-200 KB each).
        "at-limit": _zero_png(side, max_pixels() // side),
        "above-limit": _zero_png(side + 1, max_pixels() // side),
        "tiff-200-pages": _tiff_many_pages(200),
    }


def _image_case(state: dict, rng: random.Random, seed: int, index: int):
    import icmkit

    seeds = state["seeds"]
    name = rng.choice(sorted(seeds))
    data = seeds[name]
    kind = rng.choices(
        ["bytes", "size", "frames", "scans", "pages", "ispe", "limit", "none"], [50, 14, 6, 6, 3, 4, 1, 2]
    )[0]
    if kind == "bytes":
        data, recipe = _generic(rng, data, seed, index)
    elif kind == "size":
        width, height = rng.choice(_HOSTILE_SIDES), rng.choice(_HOSTILE_SIDES)
        if name.startswith(("png", "apng")):
            data = _edit_png_size(data, width, height)
        elif name.startswith("jpeg"):
            data = _edit_jpeg_size(data, width, height)
        elif name == "avif":
            data = _edit_ispe(data, width, height)
        recipe = f"size {width}x{height}"
    elif kind == "frames":
        name, frames = "apng", rng.choice((0, 1, 2, 100, 10**4, 2**31 - 1, 2**32 - 1))
        data, recipe = _edit_apng_frames(seeds["apng"], frames), f"frames {frames}"
    elif kind == "scans":
        name, copies = "jpeg-progressive", rng.choice((2, 50, 101, 500, 4000))
        data, recipe = _jpeg_scan_bomb(seeds["jpeg-progressive"], copies), f"scans ×{copies}"
    elif kind == "pages":
        name, data, recipe = "tiff", state["tiff-200-pages"], "200 pages"
    elif kind == "ispe" and "avif" in seeds:
        name, side = "avif", rng.choice((1, 16, 8192, 65535))
        data, recipe = _edit_ispe(seeds["avif"], side, side), f"ispe {side}"
    elif kind == "limit":
        which = rng.choice(("at-limit", "above-limit"))
        name, data, recipe = "png", state[which], which
    else:
        recipe = "as is"
    return f"{name}: {recipe}", lambda: icmkit.compress(data, codec="jpeg", quality=50)


# -- special files -----------------------------------------------------------------------------------
def _prepare_special(workdir: Path) -> dict:
    paths = ["/dev/zero", "/dev/urandom", "/dev/null", str(workdir)]
    for suffix in (".png", ".icm", ".safetensors", ".yaml", ".json"):
        fifo = workdir / f"fifo{suffix}"
        if not fifo.exists():
            os.mkfifo(fifo)
        paths.append(str(fifo))
        link = workdir / f"zero{suffix}"
        if not link.exists():
            link.symlink_to("/dev/zero")
        paths.append(str(link))
    return {"paths": [p for p in paths if os.path.exists(p)]}


def _special_case(state: dict, rng: random.Random, seed: int, index: int):
    import icmkit
    from icmkit import api

    path = rng.choice(state["paths"])
    operations = {
        "compress": lambda: icmkit.compress(path, codec="jpeg"),
        "decompress": lambda: icmkit.decompress(api.read_stream_file(path)),
        "predict": lambda: icmkit.predict(path),
        "features": lambda: __import__("icmkit.feature_io", fromlist=["x"]).load_features(path),
        "config": lambda: __import__("icmkit.train.config", fromlist=["x"]).load_config(path),
        "bd": lambda: __import__("icmkit.bench.results", fromlist=["x"]).load_curves(path, "psnr"),
        "codec-file": lambda: icmkit.get_codec(path),
    }
    name = rng.choice(sorted(operations))
    return f"{name} {path}", operations[name]


# -- weights files -----------------------------------------------------------------------------------
def _prepare_weights(workdir: Path) -> dict:
    import torch

    from icmkit.models import MeanScaleHyperprior, VariableRateHyperprior
    from icmkit.weights import save_weights

    torch.manual_seed(0)
    files = {}
    variable = VariableRateHyperprior(N=16, M=24, qualities=3).eval()
    variable.update()
    save_weights(variable, workdir / "seed-vr.safetensors", {"lmbdas": [0.001, 0.01, 0.1]}, slim=True)
    plain = MeanScaleHyperprior(N=16, M=24).eval()
    plain.update()
    save_weights(plain, workdir / "seed-msh.safetensors", {"lmbda": 0.01})
    for name in ("seed-vr", "seed-msh"):
        files[name] = (workdir / f"{name}.safetensors").read_bytes()
    return {"files": files, "workdir": workdir}


_CONFIG_VALUES = (
    0,
    -1,
    1,
    2,
    7,
    8,
    64,
    255,
    10**9,
    2**63,
    -(2**63),
    1.5,
    float("nan"),
    "7",
    "",
    None,
    True,
    [],
    {},
    [[[]]],
)
_TENSOR_VALUES = (float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e30, -1e30, 2**31 - 1, -(2**31))


def _weights_case(state: dict, rng: random.Random, seed: int, index: int):
    import numpy as np
    import torch
    from safetensors.torch import load, save

    from icmkit.codecs.from_file import codec_from_weights_file

    name = rng.choice(sorted(state["files"]))
    data = state["files"][name]
    kind = rng.choices(
        ["bytes", "config", "metadata", "value", "table", "dtype", "shape", "keys"], [20, 20, 8, 14, 18, 7, 7, 6]
    )[0]
    recipe = kind
    if kind == "bytes":
        data, recipe = _generic(rng, data, seed, index)
    else:
        state_dict = load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
        if kind == "config":
            config = json.loads(metadata["config"])
            key = rng.choice(sorted(config) + ["qualities", "N", "M", "unknown"])
            config[key] = rng.choice(_CONFIG_VALUES)
            metadata["config"] = json.dumps(config)
            recipe = f"config {key}={config[key]!r}"
        elif kind == "metadata":
            key = rng.choice(("config", "architecture", "train_config", "lmbdas"))
            metadata[key] = rng.choice(
                (
                    "",
                    "{",
                    "[1]",
                    "null",
                    "[" * 5000 + "]" * 5000,
                    "dicm-feature",
                    "dicm-re",
                    "x" * 10000,
                    '{"N": 1e999}',
                )
            )
            recipe = f"metadata {key}"
        elif kind in ("value", "table"):
            keys = sorted(state_dict)
            if kind == "table":
                keys = [
                    k
                    for k in keys
                    if k.rsplit(".", 1)[-1] in ("table_pmf", "table_offset", "table_length", "scale_table", "quantiles")
                ] or keys
            key = rng.choice(keys)
            tensor = state_dict[key].clone()
            if tensor.numel():
                if rng.random() < 0.3 and key.endswith("scale_table"):
                    tensor = tensor.flip(0)
                    recipe = f"{key} reversed"
                else:
                    value = rng.choice(_TENSOR_VALUES)
                    if tensor.is_floating_point() and np.isfinite(value):
                        largest = float(torch.finfo(tensor.dtype).max)
                        value = max(-largest, min(largest, float(value)))
                    if not tensor.is_floating_point():
                        info = torch.iinfo(tensor.dtype)
                        value = max(
                            info.min, min(info.max, int(np.nan_to_num(value, posinf=info.max, neginf=info.min)))
                        )
                    flat = tensor.view(-1)
                    flat[rng.randrange(flat.numel())] = value if rng.random() < 0.7 else flat[0]
                    if rng.random() < 0.2:
                        flat.fill_(value)
                    recipe = f"{key} ← {value}"
            state_dict[key] = tensor
        elif kind == "dtype":
            key = rng.choice(sorted(state_dict))
            dtype = rng.choice(
                (torch.float16, torch.float64, torch.int8, torch.int32, torch.int64, torch.uint8, torch.bfloat16)
            )
            state_dict[key] = state_dict[key].to(dtype)
            recipe = f"{key} as {dtype}"
        elif kind == "shape":
            key = rng.choice(sorted(state_dict))
            tensor = state_dict[key]
            choice = rng.randrange(3)
            if choice == 0 and tensor.ndim and tensor.shape[0] > 1:
                tensor = tensor[: tensor.shape[0] // 2]
            elif choice == 1:
                tensor = tensor.reshape(-1)
            else:
                tensor = torch.cat([tensor.reshape(-1), tensor.reshape(-1)])
            state_dict[key] = tensor.contiguous()
            recipe = f"{key} shaped {tuple(tensor.shape)}"
        else:
            key = rng.choice(sorted(state_dict))
            if rng.random() < 0.5:
                del state_dict[key]
                recipe = f"without {key}"
            else:
                state_dict[key + "_extra"] = torch.zeros(3)
                recipe = f"with {key}_extra"
        data = save(state_dict, metadata=metadata)
    path = state["workdir"] / f"case-{index % 7}.safetensors"
    path.write_bytes(data)

    def run():
        import numpy as np

        codec = codec_from_weights_file(str(path))
        image = np.full((48, 40, 3), 100, np.uint8)
        quality = codec.quality.grid[-1]
        stream = codec.encode(image, quality)
        return codec.decode(stream)

    return f"{name}: {recipe}", run


# -- YAML configs --------------------------------------------------------------------------------------
_YAML_SEEDS = (
    "architecture: variable-rate-hyperprior\nN: 16\nM: 24\ncrop: 64\nbatch_size: 2\nsteps: 4\nlmbdas: [0.001, 0.01]\n"
    "data: [icmkit:samples]\n",
    "architecture: dicm-feature\nbackbone: tf_efficientnet_lite0\nsplit: blocks.2\nN: 16\nM: 16\nhyper: 16\n"
    "crop: 64\nlatent_levels: 1\nre_levels: 0\nsteps: 2\ndata: icmkit:samples\n",
    "architecture: moco-v2\ncrop: 64\nbatch_size: 4\nssl_queue: 16\nssl_bn_groups: 2\ndata: [icmkit:samples]\n",
)
_YAML_VALUES = (
    "0",
    "-1",
    "1e9",
    "1e400",
    ".nan",
    ".inf",
    "-.inf",
    "x",
    "[]",
    "{}",
    "null",
    "true",
    "0x7fffffffffffffff",
    "99999999999999999999999",
    "!!binary aGk=",
    "!!python/object/apply:os.system ['true']",
    "&a [1]",
    "*a",
    "'" + "x" * 5000 + "'",
    "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]",
    "2001-12-14",
    "~",
    "[1, 2, 3]",
    "{a: 1}",
    "\u202e\u0000",
)


def _billion_laughs(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append(f"data: [*a{levels - 1}]")
    return "\n".join(lines) + "\n"


def _prepare_yaml(workdir: Path) -> dict:
    return {"workdir": workdir}


def _yaml_case(state: dict, rng: random.Random, seed: int, index: int):
    from icmkit.train.config import load_config

    text = rng.choice(_YAML_SEEDS)
    kind = rng.choices(["value", "lines", "bytes", "laughs", "deep", "big"], [45, 15, 25, 6, 6, 3])[0]
    if kind == "value":
        lines = text.splitlines()
        at = rng.randrange(len(lines))
        key = lines[at].split(":")[0] if rng.random() < 0.8 else rng.choice(("N", "crop", "lmbdas", "resize", "seed"))
        value = rng.choice(_YAML_VALUES)
        lines[at] = f"{key}: {value}"
        text, recipe = "\n".join(lines) + "\n", f"{key}: {value[:40]}"
    elif kind == "lines":
        lines = text.splitlines()
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines) if rng.random() < 0.5 else "  - nested: [1")
        text, recipe = "\n".join(lines), "lines"
    elif kind == "bytes":
        data, recipe = _generic(rng, text.encode(), seed, index)
        text = data.decode("utf-8", "replace")
    elif kind == "laughs":
        levels = rng.choice((2, 5, 9, 12))
        text, recipe = _billion_laughs(levels), f"billion laughs ×{levels}"
    elif kind == "deep":
        depth = rng.choice((5, 9, 100, 5000, 100_000))
        text, recipe = "data: " + "[" * depth + "]" * depth + "\n", f"nested {depth}"
    else:
        size = rng.choice((1 << 16, 1 << 18, (1 << 18) + 1, 1 << 20))
        text, recipe = "data: [icmkit:samples]\n#" + "x" * size + "\n", f"{size} bytes"
    path = state["workdir"] / f"config-{index % 7}.yaml"
    path.write_text(text, encoding="utf-8", errors="replace")
    return f"yaml {recipe}", lambda: load_config(path)


# -- icm bd inputs -------------------------------------------------------------------------------------
def _prepare_bd(workdir: Path) -> dict:
    return {"workdir": workdir}


_BD_VALUES = (float("nan"), float("inf"), -1.0, 0.0, 1e-300, 1e300, "x", None, [], {})


def _bd_case(state: dict, rng: random.Random, seed: int, index: int):
    from icmkit.bench.bd import METHODS, bd
    from icmkit.bench.results import load_curves

    points = rng.choice((0, 1, 2, 3, 4, 6, 50))
    rates = sorted(rng.uniform(0.01, 2.0) for _ in range(points))
    metric = sorted(rng.uniform(20, 40) for _ in range(points))
    kind = rng.choices(
        ["good", "values", "falling", "flat", "duplicates", "deep", "types", "csv", "bytes"],
        [10, 25, 10, 5, 5, 8, 7, 15, 15],
    )[0]
    if kind == "values" and points:
        for _ in range(rng.choice((1, 2, points))):
            (rates if rng.random() < 0.5 else metric)[rng.randrange(points)] = rng.choice(_BD_VALUES[:6])
    elif kind == "falling":
        metric = metric[::-1]
    elif kind == "flat":
        metric = [30.0] * points
    elif kind == "duplicates":
        rates = [0.5] * points
    document: object = {"name": "t", "results": {"bpp": rates, "psnr": metric}}
    if kind == "deep":
        depth = rng.choice((10, 40, 2000, 200_000))
        text = '{"name": "t", "results": {"bpp": ' + "[" * depth + "]" * depth + ', "psnr": []}}'
    elif kind == "types":
        document["results"][rng.choice(("bpp", "psnr"))] = rng.choice(_BD_VALUES[6:] + ("1,2", 3))
        text = json.dumps(document)
    else:
        text = json.dumps(document)
    suffix = ".json"
    if kind == "csv":
        rows = ["codec,bpp,psnr"] + [f"{rng.choice(('a', 't'))},{r},{m}" for r, m in zip(rates, metric)]
        text, suffix = "\n".join(rows) + "\n", ".csv"
    if kind == "bytes":
        data, recipe = _generic(rng, text.encode(), seed, index)
        text = data.decode("utf-8", "replace")
    anchor = state["workdir"] / "anchor.json"
    if not anchor.exists():
        anchor.write_text(json.dumps({"name": "a", "results": {"bpp": [0.1, 0.2, 0.4, 0.8], "psnr": [28, 31, 34, 37]}}))
    path = state["workdir"] / f"curve-{index % 7}{suffix}"
    path.write_text(text, encoding="utf-8", errors="replace")
    method, monotonic = rng.choice(sorted(METHODS)), rng.random() < 0.4
    swap = rng.random() < 0.3

    def run():
        results = []
        first, second = (path, anchor) if swap else (anchor, path)
        anchors, tests = load_curves(first, "psnr"), load_curves(second, "psnr")
        for a in anchors:
            for t in tests:
                results.append(bd(a.rates, a.metric, t.rates, t.metric, method=method, monotonic=monotonic))
        return results

    return f"bd {kind} {points} points ({method}{', monotonic' if monotonic else ''})", run


# -- features files at and above the pixel limit ----------------------------------------------------------
def _features_header(shape: tuple[int, ...], dtype: str, metadata: dict, data_bytes: int | None = None) -> bytes:
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F64": 8}
    count = 1
    for side in shape:
        count *= side
    length = count * sizes.get(dtype, 4)
    header = {"__metadata__": metadata, "features": {"dtype": dtype, "shape": list(shape), "data_offsets": [0, length]}}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    body = bytes(length if data_bytes is None else min(data_bytes, length))
    return struct.pack("<Q", len(text)) + text + body


def _prepare_featlimit(workdir: Path) -> dict:
    from icmkit.codecs.registry import split_backbones
    from icmkit.limits import max_pixels

    (backbone, split), digests = next(iter(sorted(split_backbones().items())))
    return {"workdir": workdir, "meta": (backbone, split, sorted(digests)[0]), "limit": max_pixels()}


def _featlimit_case(state: dict, rng: random.Random, seed: int, index: int):
    import icmkit

    backbone, split, digest = state["meta"]
    limit = state["limit"]
    side = int(limit**0.5)
    height = rng.choice((side, side + 8, side * 2, 64, 256, 1024, 2048, 1 << 20))
    width = rng.choice((side, side, limit // max(height, 1), 64, 1024, 3000))
    stride = rng.choice((8, 8, 8, 1, 4, 16, 10**6))
    channels = rng.choice((40, 40, 1, 4096))
    dtype = rng.choice(("F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"))
    rows, cols = -(-height // stride), -(-width // stride)
    if rng.random() < 0.2:
        rows, cols = rng.choice(((rows, cols + 1), (1, 1), (rows * 2, cols)))
    whole = rows * cols * channels <= (1 << 22) and rng.random() < 0.7  # ≤ 16 MiB of data written in full
    metadata = {
        "format": "icmkit.features/1",
        "backbone": backbone,
        "split": split,
        "head_digest": digest,
        "stride": str(stride),
        "image_size": f"{height}x{width}",
    }
    data = _features_header((1, channels, rows, cols), dtype, metadata, None if whole else rng.choice((0, 64, 4096)))
    path = state["workdir"] / f"features-{index % 7}.safetensors"
    path.write_bytes(data)
    recipe = f"{height}x{width} stride {stride}, {channels}×{rows}×{cols} {dtype}{'' if whole else ' (cut short)'}"
    return recipe, lambda: icmkit.predict(path)


PREPARE = {
    "image": _prepare_image,
    "special": _prepare_special,
    "weights": _prepare_weights,
    "yaml": _prepare_yaml,
    "bd": _prepare_bd,
    "featlimit": _prepare_featlimit,
}
CASES = {
    "image": _image_case,
    "special": _special_case,
    "weights": _weights_case,
    "yaml": _yaml_case,
    "bd": _bd_case,
    "featlimit": _featlimit_case,
}


def prepare(surfaces: list[str], workdir: Path) -> dict:
    """Each surface's seeds (built in the worker: files, FIFOs, small weights)."""
    states = {}
    for name in surfaces:
        folder = workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        states[name] = PREPARE[name](folder)
    return states


def surface_case(states: dict, surface: str, seed: int, index: int):
    """Case ``index`` of ``surface``: (recipe, the callable that runs it)."""
    rng = random.Random(f"{seed}:{index}:{surface}")
    return CASES[surface](states[surface], rng, seed, index)
