"""``report.html`` built only from a run's saved records (never by re-running models): plots, the summary and
BD tables, and one image decoded by every codec at a similar rate with the task model's prediction under
each. Feature codecs decode no image: they are shown by heat maps of their decoded features beside the
uncompressed features' (saved at bench time, see :mod:`icmkit.bench.heatmap`).

What the file holds and what it links: the plots (SVG), the tables and the showcase crops are embedded,
so report.html alone, moved or mailed, shows everything but the full-size images. Those stay files of the
bench folder (``showcase/*.png``, written by the runner) that the report links relatively and loads only
when a crop is clicked: embedding every codec's full decode would grow the report with the images' size
(a fidelity run codes whole photos, a dozen codecs × megapixels of PNG), while the crops are bounded
(:data:`CROP` ² pixels per codec)."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import numpy as np

from icmkit.bench.runner import HEATMAPS_INDEX, SHOWCASE_DIR, file_stem
from icmkit.bench.summary import ReportRows, display_header, display_value, has_rate

CROP = 256  # side of the showcase crops, shown at 1:1 (one image pixel per CSS pixel)
HEATMAP_WIDTH = 256  # heat maps wider than this are scaled down in the gallery (they show a map, not pixels)

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;
text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
td.note{text-align:left}.meta{color:#555}.header span{margin-right:1.2em;white-space:nowrap}.header b{color:#222}
.plots figure{margin:0 0 1rem}.plots img{display:block;width:100%;min-width:900px;max-width:1150px;height:auto}
details{margin:.5rem 0}summary{cursor:pointer;color:#555}
.gallery{display:flex;flex-wrap:wrap;gap:.75rem}.gallery figure{margin:0;font-size:.8rem}
.gallery figcaption{max-width:256px}.gallery figure.features figcaption{max-width:520px}
.gallery img{display:block;image-rendering:pixelated;border:1px solid #ccc}.gallery a{display:block}
.pair{display:flex;gap:8px}
.full{display:none;position:fixed;inset:0;z-index:10;overflow:auto;background:#1b1b1b;color:#eee;
padding:1rem}.full:target{display:block}.full a{color:#9cf}.full .side{display:flex;gap:12px;align-items:flex-start}
.full figure{margin:0}.full img{display:block;max-width:none;image-rendering:pixelated}
"""


# -- small pieces ---------------------------------------------------------------------------------------
def _data_uri(path: Path) -> str:
    kind = "image/svg+xml" if path.suffix.lower() == ".svg" else "image/png"
    return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _png_uri(image: np.ndarray) -> str:
    from icmkit.image import encode_png

    return "data:image/png;base64," + base64.b64encode(encode_png(np.ascontiguousarray(image))).decode("ascii")


def _relative(path: Path, out: Path) -> str:
    """A file of the bench folder as a relative link of the report (which lies in ``out``)."""
    return quote(path.relative_to(out).as_posix())


def _load(path: Path) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError:
        return None


def _float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _table(rows: list[dict], columns: list[str], marked: set[str] = frozenset()) -> str:
    """An HTML table of ``rows`` in the columns that have values; codecs in ``marked`` get a dagger."""
    columns = [c for c in columns if any(r.get(c, "") not in ("", None) for r in rows)]
    head = "".join(f"<th>{html.escape(display_header(c))}</th>" for c in columns)

    def cell(row: dict, column: str) -> str:
        text = html.escape(display_value(column, row.get(column, "")))
        if column == "codec" and row.get("codec") in marked:
            text += " †"
        return f"<td class=note>{text}</td>" if column == "note" else f"<td>{text}</td>"

    body = "".join("<tr>" + "".join(cell(r, c) for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _class_name(index: str) -> str:
    if index in ("", None):
        return ""
    try:
        from timm.data import ImageNetInfo

        return ImageNetInfo().index_to_description(int(index)).split(",")[0]
    except (ImportError, ValueError, IndexError):
        return f"class {index}"


# -- header ----------------------------------------------------------------------------------------------
def _weights(value) -> str:
    if value in (None, "none"):
        return "random weights"
    return "pretrained weights" if value == "default" else f"weights {value}"


def _task_model(meta: dict) -> tuple[str, str] | None:
    """The header's (label, text) for the task model: the classifier's or detector's name, or none."""
    task, model = meta.get("task"), meta.get("model")
    if task == "fidelity":
        return "task model", "none — a fidelity run scores the decoded pixels only (PSNR, MS-SSIM)"
    if not model:
        return None
    text = str(model) + (f" ({_weights(meta['model_weights'])})" if "model_weights" in meta else "")
    return {"classify": "classifier", "detect": "detector", "segment": "detector"}.get(task, "model"), text


def _header(meta: dict, carried: ReportRows | None) -> str:
    items = []
    for key, value in meta.items():
        if key in ("model", "model_weights"):
            continue
        items.append((key, str(value)))
        if key == "task" and (model := _task_model(meta)) is not None:
            items.append(model)
    if "task" not in meta and (model := _task_model(meta)) is not None:
        items.append(model)
    line = "".join(f"<span>{html.escape(k)}: <b>{html.escape(v)}</b></span> " for k, v in items)
    parts = [f"<p class='meta header'>{line.strip()}</p>"]
    if carried is not None and (carried.carried or carried.partial):
        text = []
        if carried.carried:
            text.append(
                f"Besides this run's codecs, this report shows {', '.join(carried.carried_codecs)} (marked †): "
                f"{carried.carried:,} result rows that earlier runs left in this folder, on the same "
                f"{str(meta['images']) + ' ' if 'images' in meta else ''}images and made with the weights "
                "provenance.json records."
            )
        if carried.partial:
            text.append(
                f"Left out: {', '.join(carried.partial)} of earlier runs, which lack some of this run's images."
            )
        parts.append(f"<p class=meta>{html.escape(' '.join(text))}</p>")
    return "".join(parts)


# -- BD --------------------------------------------------------------------------------------------------
def _has_figure(row: dict) -> bool:
    return _float(row.get("bd_rate_pct")) is not None and _float(row.get("bd_metric")) is not None


def _reason(note: str) -> str:
    """A BD note without its figures: what the ``<details>`` summary counts."""
    if "need at least 2 usable rate points" in note:
        return "not enough points (fewer than 2 usable rate points)"
    return re.split(r"[:(]", note, maxsplit=1)[0].strip() or "no BD figure"


def _bd_section(anchor: str, rows: list[dict], columns: list[str]) -> str:
    heading = f"<h2>Bjøntegaard deltas against {html.escape(anchor)}</h2>"
    intro = (
        "<p class=meta>pchip (CTC); accuracy metrics fitted monotonically first; negative BD-rate = fewer bits "
        "for the same metric</p>"
    )
    if not rows:
        return heading + "<p class=meta>No codec with at least two rate points to compare with the anchor.</p>"
    figured = [r for r in rows if _has_figure(r)]
    missing = [r for r in rows if not _has_figure(r)]
    parts = [heading, intro]
    if figured:
        parts.append(_table(figured, [c for c in columns if c != "note"]))
    if missing:
        reasons = Counter(_reason(str(r.get("note", ""))) for r in missing)
        counted = "; ".join(f"{reason} ({n})" for reason, n in reasons.most_common())
        line = (
            f"{'No' if not figured else 'Besides these,'} BD figure{'s' if not figured else ' missing'} for "
            f"{len(missing)} codec × metric pair{'s' if len(missing) != 1 else ''}: {counted}"
        )
        if not figured and set(reasons) == {_reason("need at least 2 usable rate points")}:
            line += " — more images or qualities give the curves more distinct points"
        table = _table(missing, ["codec", "anchor", "metric", "points", "note"])
        parts.append(f"<details class=bd-notes><summary>{html.escape(line)}</summary>{table}</details>")
    return "".join(parts)


# -- showcase --------------------------------------------------------------------------------------------
def _heatmaps(folder: Path) -> dict:
    """The showcase's heat-map index (``{"maps": {codec-quality: …}, "originals": {reference: …}}``)."""
    try:
        index = json.loads((folder / HEATMAPS_INDEX).read_text())
    except (OSError, ValueError):
        return {"maps": {}, "originals": {}}
    if not isinstance(index, dict):
        return {"maps": {}, "originals": {}}
    return {
        "maps": index.get("maps") or {},
        "originals": index.get("originals") or {},
        "statistic": index.get("statistic", ""),
    }


def _heatmap_files(folder: Path, index: dict, name: str) -> tuple[Path, Path, str] | None:
    """(decoded heat map, uncompressed heat map, reference name) of one codec × quality, if both exist."""
    entry = index["maps"].get(name)
    if not isinstance(entry, dict):
        return None
    original = index["originals"].get(entry.get("reference", ""))
    if not isinstance(original, dict):
        return None
    decoded, reference = folder / str(entry.get("file", "")), folder / str(original.get("file", ""))
    return (decoded, reference, str(entry["reference"])) if decoded.is_file() and reference.is_file() else None


def crop_window(image: np.ndarray, side: int = CROP) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the ``side``² window shown at 1:1: the whole image when it fits,
    else the window with the most detail (mean absolute gradient), where coding artefacts show first."""
    height, width = image.shape[:2]
    crop_h, crop_w = min(side, height), min(side, width)
    if (crop_h, crop_w) == (height, width):
        return 0, 0, height, width
    gray = image.astype(np.float32).mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
    detail = np.zeros_like(gray)
    detail[:, 1:] += np.abs(np.diff(gray, axis=1))
    detail[1:, :] += np.abs(np.diff(gray, axis=0))
    total = np.pad(detail.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # summed-area table
    step = max(1, side // 8)
    tops = sorted({*range(0, height - crop_h + 1, step), height - crop_h})
    lefts = sorted({*range(0, width - crop_w + 1, step), width - crop_w})
    best, where = -1.0, (0, 0)
    for top in tops:
        for left in lefts:
            score = (
                total[top + crop_h, left + crop_w]
                - total[top, left + crop_w]
                - total[top + crop_h, left]
                + total[top, left]
            )
            if score > best:
                best, where = float(score), (top, left)
    return (*where, crop_h, crop_w)


def _cut(image: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    top, left, height, width = window
    return image[top : top + height, left : left + width]


def _crop_img(image: np.ndarray, alt: str) -> str:
    height, width = image.shape[:2]
    return f'<img class=crop alt="{html.escape(alt)}" width={width} height={height} src="{_png_uri(image)}">'


def _overlay(ident: str, title: str, panels: list[tuple[str, str]]) -> str:
    """A full-size view opened by a crop's link (CSS ``:target``, no script): ``panels`` side by side at
    1:1, each ``(caption, relative file)``; ``loading=lazy`` keeps the files unread until it is opened."""
    figures = "".join(
        f'<figure><img loading=lazy alt="{html.escape(caption)}" src="{src}"><figcaption>'
        f'{html.escape(caption)} · <a href="{src}">file</a></figcaption></figure>'
        for caption, src in panels
    )
    return (
        f'<div class=full id="{ident}"><p><a href="#showcase">× close</a> · {title}</p>'
        f"<div class=side>{figures}</div></div>"
    )


def _choose(results: list[dict], key: str, shown, anchor: str) -> tuple[dict[str, dict], float, bool]:
    """Each codec's row of the showcase image nearest the target rate (the anchor's median, else overall)."""
    rows = [r for r in results if r["key"] == key and _float(r.get("bpp")) and shown(r)]
    anchor_rates = sorted(float(r["bpp"]) for r in rows if r["codec"] == anchor)
    rates = anchor_rates or sorted(float(r["bpp"]) for r in rows)
    if not rates:
        return {}, 0.0, False
    target = rates[len(rates) // 2]
    chosen: dict[str, dict] = {}
    for row in rows:
        best = chosen.get(row["codec"])
        if best is None or abs(math.log(float(row["bpp"]) / target)) < abs(math.log(float(best["bpp"]) / target)):
            chosen[row["codec"]] = row
    return chosen, target, bool(anchor_rates)


def _showcase(out: Path, results: list[dict], anchor: str, task: str = "") -> str:
    folder = out / SHOWCASE_DIR
    original_file = folder / "original.png"
    original = _load(original_file) if original_file.is_file() else None
    if original is None or not results:
        return ""
    index = _heatmaps(folder)
    key = results[0]["key"]

    def shown(row: dict) -> bool:
        name = file_stem(row["codec"], row["quality"])
        return (folder / f"{name}.png").is_file() or _heatmap_files(folder, index, name) is not None

    chosen, target, by_anchor = _choose(results, key, shown, anchor)
    if not chosen:
        return ""
    window = crop_window(original)
    classify = task in ("classify", "")  # "" : a caller that did not say (older callers); judged by the rows
    original_src = _relative(original_file, out)
    predicted = _original_prediction(out, key) if task != "fidelity" else ""
    figures = [
        f'<figure><a href="#full-0" title="full size">{_crop_img(_cut(original, window), "original")}</a>'
        f"<figcaption><b>original</b> (uncompressed)"
        + (f"<br>→ {html.escape(predicted)}" if predicted else "")
        + "</figcaption></figure>"
    ]
    overlays = [_overlay("full-0", "<b>original</b> (uncompressed), full size", [("original", original_src)])]
    any_features = any_verdict = False
    for number, (codec, row) in enumerate(chosen.items(), start=1):
        name = file_stem(codec, row["quality"])
        ident = f"full-{number}"
        prediction = _class_name(row.get("pred", "")) if task != "fidelity" else ""
        verdict = ""
        if classify and row.get("agree", "") != "":
            verdict, any_verdict = (" ✓" if row["agree"] == "1" else " ✗"), True
        figures_of = f"{float(row['bpp']):.3f} bpp"
        psnr = _float(row.get("psnr", ""))
        if psnr is not None:
            figures_of += f", {psnr:.2f} dB"
        title = f"<b>{html.escape(codec)}</b> q{html.escape(str(row['quality']))}: {figures_of}"
        caption = title + (f"<br>→ {html.escape(prediction)}{verdict}" if prediction else "")
        pixels = folder / f"{name}.png"
        decoded = _load(pixels) if pixels.is_file() else None
        if decoded is not None:
            cut = _cut(decoded, window) if decoded.shape[:2] == original.shape[:2] else decoded[:CROP, :CROP]
            figures.append(
                f'<figure><a href="#{ident}" title="full size, beside the original">{_crop_img(cut, codec)}</a>'
                f"<figcaption>{caption}</figcaption></figure>"
            )
            overlays.append(
                _overlay(
                    ident,
                    f"{title}, full size beside the original",
                    [(f"{codec} q{row['quality']} decoded", _relative(pixels, out)), ("original", original_src)],
                )
            )
            continue
        found = _heatmap_files(folder, index, name)
        if found is None:
            continue
        decoded_map, original_map, reference = found
        any_features = True
        split = reference.partition("@")[2] or reference
        maps = []
        for path, alt in ((decoded_map, "decoded features"), (original_map, "original features")):
            picture = _load(path)
            width = picture.shape[1] if picture is not None else HEATMAP_WIDTH
            maps.append(
                f'<img alt="{html.escape(codec)} {alt}" style="width:{min(width, HEATMAP_WIDTH)}px;height:auto" '
                f'src="{_data_uri(path)}">'
            )
        figures.append(
            f'<figure class=features><a href="#{ident}" title="full size, beside the original"><div class=pair>'
            f"{''.join(maps)}</div></a><figcaption>{caption}<br><span class=meta>decoded | uncompressed "
            f"{html.escape(split)} features</span></figcaption></figure>"
        )
        overlays.append(
            _overlay(
                ident,
                f"{title}: feature heat maps, full size, beside the original",
                [
                    ("decoded features", _relative(decoded_map, out)),
                    (f"uncompressed {split} features", _relative(original_map, out)),
                    ("original", original_src),
                ],
            )
        )
    notes = _showcase_notes(original.shape, window, any_verdict, any_features, index, task)
    shown_rates = sorted(float(row["bpp"]) for row in chosen.values())
    low, high = shown_rates[0], shown_rates[-1]
    # The heading states the rates actually shown: each codec's point nearest the target, not the target.
    rates_text = f"{low:.3f} bpp" if f"{low:.3f}" == f"{high:.3f}" else f"{low:.3f}–{high:.3f} bpp"
    return (
        f"<h2 id=showcase>One image at {rates_text}</h2><p class=meta>{html.escape(key)}: each codec at its point "
        f"nearest {target:.3f} bpp (the {'anchor' if by_anchor else 'overall'} median); {'; '.join(notes)}</p>"
        f"<div class=gallery>{''.join(figures)}</div>{''.join(overlays)}"
    )


def _showcase_notes(shape, window, any_verdict: bool, any_features: bool, index: dict, task: str) -> list[str]:
    """What the showcase's pictures are: their scale and window, the click, and the captions' marks."""
    notes = []
    height, width = shape[:2]
    top, left, crop_h, crop_w = window
    if (crop_h, crop_w) == (height, width):
        notes.append(f"every picture at 1:1 ({width}×{height}, the whole coded image)")
    else:
        notes.append(
            f"crops at 1:1: the {crop_w}×{crop_h} window at x = {left}, y = {top} of the {width}×{height} coded "
            "image with the most detail, the same window for every codec"
        )
    notes.append(
        "click a picture for the full decoded image beside the original (files in showcase/ next to this report)"
    )
    if any_verdict:
        notes.append("✓ / ✗ = same / another top-1 as on the uncompressed image")
    if any_features:
        box = (
            ", the white box being the window the classifier's tail sees, and ✓ compares with the top-1 on the "
            "uncompressed features"
            if task in ("classify", "")
            else ""
        )
        notes.append(
            "feature codecs decode no image: their decoded features are shown as a heat map "
            f"({html.escape(str(index.get('statistic') or 'feature magnitude'))}, one block per feature sample, both "
            f"maps on the uncompressed map's scale) beside the uncompressed features{box}"
        )
    return notes


def _original_prediction(out: Path, key: str) -> str:
    """The task model's class on the uncompressed showcase image (its ``reference.csv`` row), if scored."""
    from icmkit.bench.runner import read_results

    for row in read_results(out / "reference.csv"):
        if row.get("key") == key and row.get("reference") == "image":
            return _class_name(row.get("pred", ""))
    return ""


def _references(summary: list[dict]) -> str:
    rows = [r for r in summary if not has_rate(r)]
    if not rows:
        return ""
    parts = []
    for row in rows:
        values = [
            f"{metric} {value:.1f} %"
            for metric in ("top1", "top5", "map", "map50")  # classification, detection
            if (value := _float(row.get(metric))) is not None
        ]
        parts.append(f"{html.escape(str(row['codec']))}: {', '.join(values) or '—'}")
    features = any("features" in str(row["codec"]) for row in rows)
    return (
        "<p class=meta>Rows in parentheses are the task model on uncompressed inputs (no rate): "
        + "; ".join(parts)
        + "."
        + (
            " Uncompressed features are the classifier's own head features of the "
            "coded crop, through its tail on the same centre window as a feature codec's decoded features."
            if features
            else ""
        )
        + "</p>"
    )


def _plot_images(plots: list[Path]) -> str:
    """Each plot at the report's full width: its SVG where there is one (vector: sharp at any zoom)."""
    figures = []
    for png in plots:
        svg = png.with_suffix(".svg")
        source = svg if svg.is_file() else png
        figures.append(f'<figure><img alt="{html.escape(png.stem)}" src="{_data_uri(source)}"></figure>')
    return "".join(figures)


def write_report(
    out: Path,
    meta: dict,
    results: list[dict],
    summary: list[dict],
    bd_rows: list[dict],
    plots: list[Path],
    summary_columns: list[str],
    bd_columns: list[str],
    carried: ReportRows | None = None,
) -> Path:
    """``out/report.html``. ``meta``: the header (``task``, ``model`` and ``model_weights`` name the task
    model); ``carried``: the rows of other codecs earlier runs left in ``out``, marked † in the tables."""
    from icmkit.fileio import atomic_write

    marked = set(carried.carried_codecs) if carried is not None else set()
    task = str(meta.get("task", ""))
    time_note = (
        "<p class=meta>enc ms / dec ms: mean encoding / decoding time per image in milliseconds, on the "
        "machine that ran the bench." + (" † from an earlier run in this folder." if marked else "") + "</p>"
    )
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>icmkit benchmark</title>"
        f"<style>{_CSS}</style></head><body><h1>icmkit benchmark</h1>{_header(meta, carried)}",
        f"<h2>Rate–metric curves</h2><div class=plots>{_plot_images(plots)}</div>",
        f"<h2>Summary (means per codec × quality)</h2>{_table(summary, summary_columns, marked)}{time_note}"
        f"{_references(summary)}",
        _bd_section(str(meta.get("anchor", "")), bd_rows, bd_columns),
        _showcase(out, results, str(meta.get("anchor", "")), task),
        "</body></html>",
    ]
    path = out / "report.html"
    atomic_write(path, "".join(parts).encode("utf-8"))
    return path
