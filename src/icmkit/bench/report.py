"""A self-contained ``report.html`` built only from a run's saved records (never by re-running models):
plots, the summary and BD tables, and one image decoded by every codec at a similar rate with the
task model's prediction under each."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from icmkit.bench.runner import SHOWCASE_DIR

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots img{width:560px;max-width:100%;border:1px solid #eee}
.gallery{display:flex;flex-wrap:wrap;gap:.75rem}.gallery figure{margin:0;width:200px;font-size:.8rem}
.gallery img{width:200px;height:auto;image-rendering:pixelated;border:1px solid #ccc}.meta{color:#555}
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


def _showcase(out: Path, results: list[dict], anchor: str) -> str:
    folder = out / SHOWCASE_DIR
    if not (folder / "original.png").is_file() or not results:
        return ""
    key = results[0]["key"]
    rows = [r for r in results if r["key"] == key and (folder / f"{r['codec']}-{r['quality']}.png").is_file()]
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
    figures = [f'<figure><img alt="original" src="{_data_uri(folder / "original.png")}">'
               f"<figcaption><b>original</b></figcaption></figure>"]
    for codec, row in chosen.items():
        prediction = _class_name(row.get("pred", ""))
        verdict = "" if row.get("agree", "") == "" else (" ✓" if row["agree"] == "1" else " ✗")
        picture = _data_uri(folder / (codec + "-" + str(row["quality"]) + ".png"))
        figures.append(
            f'<figure><img alt="{html.escape(codec)}" src="{picture}">'
            f"<figcaption><b>{html.escape(codec)}</b> q{html.escape(str(row['quality']))}: "
            f"{float(row['bpp']):.3f} bpp, {float(row['psnr']):.2f} dB"
            + (f"<br>→ {html.escape(prediction)}{verdict}" if prediction else "") + "</figcaption></figure>"
        )
    return (f"<h2>One image at about {target:.3f} bpp</h2><p class=meta>{html.escape(key)}; ✓ = same top-1 as on "
            f"the uncompressed image</p><div class=gallery>{''.join(figures)}</div>")


def write_report(out: Path, meta: dict, results: list[dict], summary: list[dict], bd_rows: list[dict],
                 plots: list[Path], summary_columns: list[str], bd_columns: list[str]) -> Path:
    from icmkit.fileio import atomic_write

    info = " · ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in meta.items())
    images = "".join(f'<img alt="{p.stem}" src="{_data_uri(p)}">' for p in plots)
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>icmkit benchmark</title>"
        f"<style>{_CSS}</style></head><body><h1>icmkit benchmark</h1><p class=meta>{info}</p>",
        f"<h2>Rate–metric curves</h2><div class=plots>{images}</div>",
        f"<h2>Summary (means per codec × quality)</h2>{_table(summary, summary_columns)}",
        f"<h2>Bjøntegaard deltas against {html.escape(str(meta.get('anchor', '')))}</h2>"
        "<p class=meta>pchip (CTC); accuracy metrics fitted monotonically first; negative BD-rate = fewer bits "
        f"for the same metric</p>{_table(bd_rows, bd_columns)}",
        _showcase(out, results, str(meta.get("anchor", ""))),
        "</body></html>",
    ]
    path = out / "report.html"
    atomic_write(path, "".join(parts).encode("utf-8"))
    return path
