"""A self-contained ``report.html`` built only from a run's saved records (never by re-running models):
plots, the summary and BD tables, and one image decoded by every codec at a similar rate with the
task model's prediction under each. Feature codecs decode no image: they are shown by heat maps of their
decoded features beside the uncompressed features' (saved at bench time, see :mod:`icmkit.bench.heatmap`)."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from icmkit.bench.runner import HEATMAPS_INDEX, SHOWCASE_DIR, file_stem
from icmkit.bench.summary import has_rate

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots img{width:560px;max-width:100%;border:1px solid #eee}
.gallery{display:flex;flex-wrap:wrap;gap:.75rem}.gallery figure{margin:0;width:200px;font-size:.8rem}
.gallery img{width:200px;height:auto;image-rendering:pixelated;border:1px solid #ccc}.meta{color:#555}
.gallery figure.features{width:410px}.pair{display:flex;gap:10px}
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def _table(rows: list[dict], columns: list[str]) -> str:
    columns = [c for c in columns if any(r.get(c, "") != "" for r in rows)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _class_name(index: str) -> str:
    if index in ("", None):
        return ""
    try:
        from timm.data import ImageNetInfo

        return ImageNetInfo().index_to_description(int(index)).split(",")[0]
    except (ImportError, ValueError, IndexError):
        return f"class {index}"


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


def _float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _showcase(out: Path, results: list[dict], anchor: str) -> str:
    folder = out / SHOWCASE_DIR
    if not (folder / "original.png").is_file() or not results:
        return ""
    index = _heatmaps(folder)
    key = results[0]["key"]

    def shown(row: dict) -> bool:
        name = f"{row['codec']}-{row['quality']}"
        return (folder / f"{name}.png").is_file() or _heatmap_files(folder, index, name) is not None

    rows = [r for r in results if r["key"] == key and _float(r.get("bpp")) and shown(r)]
    anchor_rates = sorted(float(r["bpp"]) for r in rows if r["codec"] == anchor)
    all_rates = sorted(float(r["bpp"]) for r in rows)
    if not all_rates:
        return ""
    target = (anchor_rates or all_rates)[len(anchor_rates or all_rates) // 2]
    chosen: dict[str, dict] = {}
    for row in rows:
        best = chosen.get(row["codec"])
        if best is None or abs(math.log(float(row["bpp"]) / target)) < abs(math.log(float(best["bpp"]) / target)):
            chosen[row["codec"]] = row
    original = _original_prediction(out, key)
    figures = [
        f'<figure><img alt="original" src="{_data_uri(folder / "original.png")}">'
        f"<figcaption><b>original</b> (uncompressed)"
        + (f"<br>→ {html.escape(original)}" if original else "")
        + "</figcaption></figure>"
    ]
    any_features = False
    for codec, row in chosen.items():
        name = file_stem(codec, row["quality"])
        prediction = _class_name(row.get("pred", ""))
        verdict = "" if row.get("agree", "") == "" else (" ✓" if row["agree"] == "1" else " ✗")
        figures_of = f"{float(row['bpp']):.3f} bpp"
        psnr = _float(row.get("psnr", ""))
        if psnr is not None:
            figures_of += f", {psnr:.2f} dB"
        caption = f"<b>{html.escape(codec)}</b> q{html.escape(str(row['quality']))}: {figures_of}" + (
            f"<br>→ {html.escape(prediction)}{verdict}" if prediction else ""
        )
        pixels = folder / f"{name}.png"
        if pixels.is_file():
            figures.append(
                f'<figure><img alt="{html.escape(codec)}" src="{_data_uri(pixels)}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
            continue
        decoded, original, reference = _heatmap_files(folder, index, name)
        any_features = True
        split = reference.partition("@")[2] or reference
        figures.append(
            f'<figure class=features><div class=pair><img alt="{html.escape(codec)} decoded features" '
            f'src="{_data_uri(decoded)}"><img alt="{html.escape(codec)} original features" '
            f'src="{_data_uri(original)}"></div><figcaption>{caption}<br><span class=meta>decoded | uncompressed '
            f"{html.escape(split)} features</span></figcaption></figure>"
        )
    features_note = (
        (
            f"; feature codecs decode no image: their decoded features are shown as a heat map "
            f"({html.escape(str(index.get('statistic') or 'feature magnitude'))}, one block per feature sample, both "
            "maps on the uncompressed map's scale) beside the uncompressed features, the white box being the window "
            "the classifier's tail sees, and ✓ compares with the top-1 on the uncompressed features"
        )
        if any_features
        else ""
    )
    shown_rates = sorted(float(row["bpp"]) for row in chosen.values())
    low, high = shown_rates[0], shown_rates[-1]
    # The heading states the rates actually shown: each codec's point nearest the target, not the target.
    rates_text = f"{low:.3f} bpp" if f"{low:.3f}" == f"{high:.3f}" else f"{low:.3f}–{high:.3f} bpp"
    return (
        f"<h2>One image at {rates_text}</h2><p class=meta>{html.escape(key)}: each codec at its point nearest "
        f"{target:.3f} bpp (the {'anchor' if anchor_rates else 'overall'} median); ✓ = same top-1 as on "
        f"the uncompressed image{features_note}</p><div class=gallery>{''.join(figures)}</div>"
    )


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
            f"{metric} {value:.1f} %" for metric in ("top1", "top5") if (value := _float(row.get(metric))) is not None
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


def write_report(
    out: Path,
    meta: dict,
    results: list[dict],
    summary: list[dict],
    bd_rows: list[dict],
    plots: list[Path],
    summary_columns: list[str],
    bd_columns: list[str],
) -> Path:
    from icmkit.fileio import atomic_write

    info = " · ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in meta.items())
    images = "".join(f'<img alt="{p.stem}" src="{_data_uri(p)}">' for p in plots)
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>icmkit benchmark</title>"
        f"<style>{_CSS}</style></head><body><h1>icmkit benchmark</h1><p class=meta>{info}</p>",
        f"<h2>Rate–metric curves</h2><div class=plots>{images}</div>",
        f"<h2>Summary (means per codec × quality)</h2>{_table(summary, summary_columns)}{_references(summary)}",
        f"<h2>Bjøntegaard deltas against {html.escape(str(meta.get('anchor', '')))}</h2>"
        "<p class=meta>pchip (CTC); accuracy metrics fitted monotonically first; negative BD-rate = fewer bits "
        f"for the same metric</p>{_table(bd_rows, bd_columns)}",
        _showcase(out, results, str(meta.get("anchor", ""))),
        "</body></html>",
    ]
    path = out / "report.html"
    atomic_write(path, "".join(parts).encode("utf-8"))
    return path
