"""Evidence pages from the JSON the evidence scripts write, so that no figure in the docs can drift from it.

The MkDocs hook (``hooks:`` in ``mkdocs.yml``) replaces, in every page's markdown, before it is rendered:

- ``{{ SOURCE PATH | FILTER ... }}`` by one number of a JSON file. ``SOURCE`` is a key of :data:`SOURCES`;
  ``PATH`` walks the JSON with ``/`` between keys (keys may hold dots: ``at_0.3/gap_pp``), a list index
  (``probes/frozen/3/top1``) or a selector ``[key=value,key=value]`` that must match exactly one element of a list
  (``[test=icm-mmd,anchor=icm-mse,metric=top1,classifier=lite0]/bd_rate_pct``). Filters apply left to right:
  ``*100`` multiplies, ``1-`` takes the complement, ``inv`` the inverse,
  ``abs`` drops the sign, ``int`` rounds to an integer,
  anything else is a :func:`format` spec (``+.1f``, ``,.0f``). A minus sign is printed as U+2212, as elsewhere.
- ``{{ table NAME [ARG ...] }}`` by a markdown table built by one of :data:`TABLES` from those files.

An unknown source, path, filter or table stops the build (``mkdocs build`` fails, strict or not), and
``tests/test_docs.py`` renders every directive of every page, and the README's headline table, without MkDocs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SOURCES = {
    "results": "docs/dev200-results.json",
    "dicm": "docs/dicm-evidence-dev200.json",
    "pixel": "docs/pixel-evidence-dev200.json",
    "rate": "docs/rate-control-evidence-dev200.json",
    "ssl": "docs/ssl-probe-dev200.json",
    "geometry": "docs/feature-geometry-dev200.json",
    "geometry-samples": "docs/feature-geometry-samples.json",
    "restoration": "docs/restoration-evidence-dev200.json",
    "restoration-speed": "docs/restoration-speed.json",
    "throughput": "docs/feature-training-throughput.json",
    "bf16-check": "docs/feature-bf16-check.json",
    "feature-speed": "docs/feature-speed.json",
    "re-check": "docs/feature-re-check.json",
    "re-joint-check": "docs/feature-re-joint-check.json",
    "lowend-check": "docs/feature-lowend-check.json",
    "pixel-speed": "docs/pixel-speed.json",
    "zoo-icm-mse": "src/icmkit/zoo/icm-mse.json",
    "zoo-icm-mmd": "src/icmkit/zoo/icm-mmd.json",
    "zoo-icm-dicm-lite0": "src/icmkit/zoo/icm-dicm-lite0.json",
}

DIRECTIVE = re.compile(r"\{\{[ \t]*([^\n]+?)[ \t]*\}\}")
# Code is left as it is: fenced blocks and inline code spans may show a directive's syntax.
CODE = re.compile(r"^(```|~~~).*?^\1[ \t]*$|`[^`\n]*`", re.DOTALL | re.MULTILINE)
MINUS = "\u2212"


class EvidenceError(ValueError):
    """A directive that names no source, path, filter or table, or a value that is not a number."""


def load(source: str) -> object:
    if source not in SOURCES:
        raise EvidenceError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
    return json.loads((ROOT / SOURCES[source]).read_text(encoding="utf-8"))


def lookup(data: object, path: str) -> object:
    """The value at ``path`` (see the module's docstring) inside ``data``."""
    for part in [p for p in path.split("/") if p]:
        if part.startswith("[") and part.endswith("]"):
            wanted = dict(item.split("=", 1) for item in part[1:-1].split(","))
            if not isinstance(data, list):
                raise EvidenceError(f"selector {part} on a {type(data).__name__}, not a list")
            found = [x for x in data if isinstance(x, dict) and all(str(x.get(k)) == v for k, v in wanted.items())]
            if len(found) != 1:
                raise EvidenceError(f"selector {part} matches {len(found)} elements, not one")
            data = found[0]
        elif isinstance(data, list):
            try:
                data = data[int(part)]
            except (ValueError, IndexError):
                raise EvidenceError(f"no element {part!r} in a list of {len(data)}") from None
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise EvidenceError(f"no key {part!r} (path {path!r})")
    return data


def number(value: object, spec: str = "") -> str:
    """``value`` formatted with ``spec``, a minus sign as U+2212; ``—`` for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if not isinstance(value, int | float):
        raise EvidenceError(f"{value!r} is not a number")
    text = format(value, spec)
    return MINUS + text[1:] if text.startswith("-") else text


def value(expression: str) -> str:
    """Render ``SOURCE PATH | FILTER ...``."""
    head, *filters = [part.strip() for part in expression.split("|")]
    try:
        source, path = head.split(None, 1)
    except ValueError:
        raise EvidenceError(f"{{{{ {expression} }}}}: expected SOURCE PATH") from None
    x = lookup(load(source), path)
    spec = ""
    for f in filters:
        if f.startswith("*"):
            x = x * float(f[1:])
        elif f == "abs":
            x = abs(x)
        elif f == "1-":
            x = 1 - x
        elif f == "inv":
            x = 1 / x
        elif f == "int":
            x = round(x)
        else:
            spec = f
    try:
        return number(x, spec)
    except ValueError as exc:
        raise EvidenceError(f"{{{{ {expression} }}}}: {exc}") from None


def _pct(x: float | None, spec: str = "+.1f") -> str:
    text = number(x, spec)
    return text if text == "—" else f"{text} %"


def _span(lo, hi, spec: str) -> str:
    return "—" if lo is None or hi is None else f"{number(lo, spec)}–{number(hi, spec)}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- the tables ------------------------------------------------------------------------------------------------

EVIDENCE_PAGE = {
    "icm-dicm-lite0": "evidence/feature-codec.md",
    "icm-mmd": "evidence/pixel-codecs.md",
    "icm-mse": "evidence/pixel-codecs.md",
}
HEADLINE_NAMES = {
    "icm-dicm-lite0": "**icm-dicm-lite0** (feature codec, seed 2)",
    "icm-mmd": "icm-mmd (learned, perception term, seed 1)",
    "icm-mse": "icm-mse (learned, MSE; the default)",
    "hevc444": "hevc444 (x265, BPG settings; the anchor)",
    "avif": "avif",
    "webp": "webp",
    "jxl": "jxl",
    "jpeg2000": "jpeg2000",
    "jpeg": "jpeg",
    "jpeg444": "jpeg444",
}


def headline(prefix: str = "") -> str:
    """One row per codec of the imagenet-dev200 run: rate range, top-1 range, BD-rates against HEVC-444, and a
    link to the page with the evidence (``prefix`` is prepended to the links: ``docs/`` in the README)."""
    results = load("results")
    rows = []
    for r in results["rows"]:
        page = EVIDENCE_PAGE.get(r["codec"], "evidence/index.md")
        rows.append(
            [
                HEADLINE_NAMES.get(r["codec"], r["codec"]),
                _span(r["bpp_lo"], r["bpp_hi"], ".3f"),
                _span(r["top1_lo"], r["top1_hi"], ".4g"),
                _pct(r["bd_rate_top1"]) if r["codec"] != results["anchor"] else "anchor",
                _pct(r["bd_rate_psnr"]) if r["codec"] != results["anchor"] else "anchor",
                f"[evidence]({prefix}{page})",
            ]
        )
    header = ["codec", "bpp", "top-1 (%)", "BD-rate top-1 vs HEVC-444", "BD-rate PSNR vs HEVC-444", ""]
    return _table(header, rows)


def results_table() -> str:
    """The full imagenet-dev200 table: points, ranges and BD figures against the anchor on top-1 and PSNR."""
    results = load("results")
    rows = []
    for r in results["rows"]:
        name = f"**{r['codec']}** (features)" if r["kind"] == "feature" else r["codec"]
        rows.append(
            [
                name,
                str(r["points"]),
                _span(r["bpp_lo"], r["bpp_hi"], ".3f"),
                _span(r["top1_lo"], r["top1_hi"], ".4g"),
                _span(r["psnr_lo"], r["psnr_hi"], ".2f"),
                _pct(r["bd_rate_top1"]),
                number(r["bd_top1"], "+.2f"),
                _pct(r["bd_rate_psnr"]),
                number(r["bd_psnr"], "+.2f"),
            ]
        )
    a = results["anchor"]
    header = ["codec", "points", "bpp", "top-1 range", "PSNR range", f"BD-rate top-1 vs {a}", "BD-top-1 (pp)"]
    header += [f"BD-rate PSNR vs {a}", "BD-PSNR (dB)"]
    return _table(header, rows)


def zoo_table(*families: str) -> str:
    """Per quality of the shipped families: λ, β, and the bench metrics recorded in the package's zoo tables."""
    rows = []
    feature = False
    for family in families:
        for e in load(f"zoo-{family}")["entries"]:
            m = e["metrics"]
            feature = feature or e["kind"] == "feature"
            row = [family, str(e["quality"]), number(e["lmbda"], "g")]
            if e["kind"] == "feature":
                row += [number(m["bpp"], ".3f"), number(m["top1_lite0"], ".1f")]
            else:
                row += [number(e["beta"], ".1f"), number(m["bpp"], ".3f"), number(m["psnr"], ".2f")]
                row += [number(m["ms_ssim"], ".4f")]
                row += [number(m.get(f"top1_lite{i}"), ".1f") for i in range(3)]
            rows.append(row)
    if feature:
        return _table(["codec", "quality", "λ", "bpp", "top-1 Lite0"], rows)
    header = ["codec", "quality", "λ", "β", "bpp", "PSNR (dB)", "MS-SSIM", "top-1 Lite0", "top-1 Lite1", "top-1 Lite2"]
    return _table(header, rows)


def dicm_targets() -> str:
    """The feature codec's targets (issue 22) against what was measured."""
    d = load("dicm")
    ref = d["uncompressed"]["image_top1"]
    dicm = next(r for r in load("results")["rows"] if r["codec"] == "icm-dicm-lite0")

    def met(ok: bool) -> str:
        return "met" if ok else "**missed**"

    def bd(key: str, limit: float, label: str) -> list[str]:
        b = d[key]
        measured = f"**{_pct(b['bd_rate_pct'])}** (overlap {_span(b['overlap_lo'], b['overlap_hi'], '.4g')} %)"
        return [f"BD-rate on top-1 vs {label} ≤ {number(limit, '.0f')} %", measured, met(b["bd_rate_pct"] <= limit)]

    def gap(key: str, points: float) -> list[str]:
        g = d[key]
        rate = key.split("_", 1)[1]
        if g["best_measured"] is None:
            return [f"within {number(points, '.0f')} points at ≤ {rate} bpp", "no point at or below it", met(False)]
        best, down = number(g["best_measured"], ".1f"), number(g["gap_pp"], ".1f")
        measured = f"best measured at ≤ {rate} bpp: {best} % ({down} points down)"
        if g["interpolated"] is not None:
            measured += f"; interpolated at {rate} bpp: {number(g['interpolated'], '.1f')} %"
        return [
            f"within {number(points, '.0f')} points of the uncompressed {number(ref, '.1f')} % at ≤ {rate} bpp",
            measured,
            met(g["gap_pp"] <= points),
        ]

    low = d["at_0.04"]["best_measured"]
    rows = [
        bd("vs_hevc444", -85, "HEVC-444"),
        bd(f"vs_{d['baseline']}", -25, "v2 (the file it replaces)"),
        gap("at_0.3", 3),
        gap("at_0.15", 6),
        [
            "≥ 60 % top-1 at ≤ 0.04 bpp",
            "no point at or below it" if low is None else f"best measured: {number(low, '.1f')} %",
            met(low is not None and low >= 60),
        ],
    ]
    lim = d["physical_limit"]
    ratio = lim["lowest_point_bits"] / lim["bits_per_image_limit"]
    limit_bits, lowest_bits = number(lim["bits_per_image_limit"], ".1f"), number(lim["lowest_point_bits"], ",.0f")
    rows += [
        [
            "rate range at least 0.03–0.5 bpp",
            f"{_span(dicm['bpp_lo'], dicm['bpp_hi'], '.3f')} bpp",
            met(dicm["bpp_lo"] <= 0.03 and dicm["bpp_hi"] >= 0.5),
        ],
        [
            f"distance to the physical limit (log₂ 1000 ≈ {limit_bits} bits per image)",
            f"the lowest point spends {lowest_bits} bits, {number(ratio, '.0f')}× the limit",
            "—",
        ],
    ]
    return _table(["target", "measured", ""], rows)


ABLATIONS = {
    "dicm-conv": ("`block=conv`", "plain 3×3 convolutions instead of gnConv in analysis and synthesis"),
    "dicm-no-ckbd": ("`context=none`", "no checkerboard context (hyperprior only)"),
    "dicm-re": ("`re_levels=1`", "RE module (Conv2Former, latent at 1/2 of the map) trained jointly"),
    "dicm-attention": (
        "`hyper_synthesis=attention`",
        "the paper's transformer block in h_s, run in float (not bit-exact) instead of the exact-integer convolutions",
    ),
}


def dicm_ablations() -> str:
    """The feature codec's ablations at equal budget: BD-rate on top-1 against the full model."""
    rows = []
    for a in load("dicm")["ablations"]:
        variant, change = ABLATIONS.get(a["test"], (a["test"], ""))
        bd = _pct(a["bd_rate_pct"])
        rows.append(
            [
                variant,
                change,
                f"**{bd}**" if bd != "—" else a["note"],
                _span(a["overlap_lo"], a["overlap_hi"], ".4g") if bd != "—" else "none",
            ]
        )
    return _table(["variant", "what changes", "BD-rate on top-1 vs full", "overlap (top-1 %)"], rows)


# Targets of the pixel-codecs-v2 issue: (test, anchor, metric, classifier) → the BD-rate it had to reach.
PIXEL_TARGETS = {
    ("icm-mmd", "icm-mse", "top1", "lite0"): -20.0,
    ("icm-mmd", "icm-mse", "top1", "lite1"): -10.0,
    ("icm-mmd", "icm-mse", "top1", "lite2"): -10.0,
    ("icm-mmd", "hevc444", "top1", "lite0"): -30.0,
    ("icm-mse", "webp", "psnr", "—"): -20.0,
    ("icm-mse", "hevc444", "psnr", "—"): 15.0,
}


def pixel_bd() -> str:
    """MMD vs MSE-only vs the anchors on three classifiers and on PSNR, with the targets each had."""
    rows = []
    for r in load("pixel"):
        if "test" not in r or "ablation" in r or "sweep" in r:
            continue
        bd = _pct(r["bd_rate_pct"])
        target = PIXEL_TARGETS.get((r["test"], r["anchor"], r["metric"], r["classifier"]))
        if target is not None:
            bd += f" {'met' if r['bd_rate_pct'] <= target else 'not met'} (target ≤ {_pct(target, '+.0f')})"
        unit = " dB" if r["metric"] == "psnr" else " pp"
        rows.append(
            [
                r["classifier"] if r["metric"] != "psnr" else "— (fidelity)",
                f"{r['test']} vs {r['anchor']}",
                r["metric"],
                bd,
                number(r["bd_metric"], "+.2f") + unit,
                _span(r["overlap_lo"], r["overlap_hi"], ".4g"),
                str(r["points"]),
            ]
        )
    return _table(["classifier", "curves", "metric", "BD-rate", "BD-metric", "overlap", "points"], rows)


def pixel_sweep() -> str:
    """The β sweep of the perception term (and the context ablation): BD figures against their baseline."""
    rows = []
    data = load("pixel")
    for name in ("pixel-beta-2", "pixel-beta-5", "pixel-beta-10"):
        top1 = lookup(data, f"[test={name},metric=top1]")
        psnr = lookup(data, f"[test={name},metric=psnr]")
        rows.append(
            [
                name.rsplit("-", 1)[1],
                _pct(top1["bd_rate_pct"]),
                number(top1["bd_metric"], "+.2f") + " pp",
                _span(top1["overlap_lo"], top1["overlap_hi"], ".4g") + " %",
                _pct(psnr["bd_rate_pct"]),
                number(psnr["bd_metric"], "+.2f") + " dB",
            ]
        )
    header = ["β", "Lite0 top-1 BD-rate vs β = 0", "BD-top-1", "overlap", "PSNR BD-rate vs β = 0", "BD-PSNR"]
    return _table(header, rows)


def rate_keep() -> str:
    """Keep-top1 rate control against fixed quality at the same mean rate, on the search's and unseen classifiers."""
    rows = []
    for codec, r in load("rate").items():
        k = r["keep_top1"]
        name = f"{codec} (features)" if codec.startswith("icm-dicm") else codec
        row = [name, number(k["bpp"], ".3f"), number(k["encodes"], ".2f"), _pct(k["kept"] * 100, ".1f")]
        for i in range(3):
            if f"top1_lite{i}" in k:
                adaptive = number(k[f"top1_lite{i}"], ".1f")
                row.append(f"{adaptive} / {number(k[f'fixed_top1_lite{i}_at_bpp'], '.1f')}")
            else:
                row.append("—")
        rows.append(row)
    header = ["codec", "keep-top1: mean bpp", "encodes per search", "decision kept"]
    header += ["top-1 Lite0 (the search's own): adaptive / fixed at that bpp"]
    header += ["top-1 Lite1 (unseen): adaptive / fixed", "top-1 Lite2 (unseen): adaptive / fixed"]
    return _table(header, rows)


def rate_size() -> str:
    """``--target-bytes``: how close the size search lands."""
    rows = []
    target = None
    for codec, r in load("rate").items():
        s = r["size"]
        target = s["target_bytes"]
        name = f"{codec} (features)" if codec.startswith("icm-dicm") else codec
        rows.append(
            [
                name,
                number(s["mean_bytes"], ",.0f"),
                number(s["mean_abs_error_bytes"], ".0f"),
                _pct(s["met"] * 100, ".0f"),
                number(s["encodes"], ".2f"),
            ]
        )
    header = ["codec", f"`--target-bytes {target}`: mean bytes", "mean abs error", "met", "encodes per search"]
    return _table(header, rows)


def ssl_probe() -> str:
    """Linear-probe top-1 against bpp: the frozen-backbone feature codec and the SSL schedule's stage-4 codec."""
    probes = load("ssl")["probes"]
    rows = []
    for frozen, ssl in zip(probes["frozen"], probes["ssl"]):
        rows.append(
            [
                str(frozen["quality"]),
                number(frozen["bpp"], ".3f"),
                _pct(frozen["top1"], ".1f"),
                number(ssl["bpp"], ".3f"),
                _pct(ssl["top1"], ".1f"),
            ]
        )
    header = ["quality", "frozen-backbone `icm-dicm-lite0`: bpp", "top-1", "SSL schedule's stage-4 codec: bpp", "top-1"]
    return _table(header, rows)


def restoration_bd() -> str:
    """One row per composed codec: BD-rate on top-1 of the three classifiers against its base codec and against
    the learned pixel codec (pchip after an isotonic fit), BD-PSNR / BD-MS-SSIM against the base, and the issue's
    targets (top-1 BD-rates of the perception filters; the PSNR gain of β = 0 filters)."""
    records = load("restoration")["bd"]
    tests = list(dict.fromkeys(r["test"] for r in records))
    rows = []
    for test in tests:
        mine = {(r["anchor"], r["metric"]): r for r in records if r["test"] == test}
        base = test.split("+", 1)[0]
        classifiers = sorted(m.removeprefix("top1_") for a, m in mine if m.startswith("top1_") and a == base)
        learned = next((a for a, m in mine if a != base), None)
        verdicts = []
        for c in classifiers:
            r = mine[(base, f"top1_{c}")]
            target, rate = r.get("target_pct"), r["bd_rate_pct"]
            if target is not None and rate is not None and not math.isnan(rate):
                verdicts.append(f"{c}: {'met' if rate <= target else 'missed'} (≤ {number(target, '+.0f')} %)")
        psnr = mine[(base, "psnr")]
        if psnr.get("target_db") is not None and not math.isnan(psnr["bd_metric"]):
            met = psnr["bd_metric"] >= psnr["target_db"]
            verdicts.append(f"PSNR: {'met' if met else 'missed'} (≥ +{number(psnr['target_db'], '.1f')} dB)")
        rows.append(
            [
                f"`{test}`",
                " / ".join(_pct(mine[(base, f"top1_{c}")]["bd_rate_pct"]) for c in classifiers),
                " / ".join(_pct(mine[(learned, f"top1_{c}")]["bd_rate_pct"]) for c in classifiers) if learned else "",
                number(psnr["bd_metric"], "+.2f") + " dB",
                number(mine[(base, "ms_ssim")]["bd_metric"], "+.4f"),
                "; ".join(verdicts),
            ]
        )
    header = [
        "codec",
        "top-1 BD-rate vs its base (Lite0 / Lite1 / Lite2)",
        "vs `icm-mmd` (Lite0 / Lite1 / Lite2)",
        "BD-PSNR vs base",
        "BD-MS-SSIM",
        "targets",
    ]
    return _table(header, rows)


def restoration_speed() -> str:
    """The filter's time against its base codec's decode, in the same run."""
    payload = load("restoration-speed")
    rows = [
        [
            r["codec"],
            r["size"].replace("x", "×"),
            number(r["base_decode_ms"], ".1f") + " ms",
            number(r["filter_ms"], ".1f") + " ms",
            number(r["filter_over_base_decode"], ".2f") + "×",
            "yes"
            if r["identical_across_threads"]
            else f"no: {r.get('samples_differing', '?')} of {r.get('samples', 0):,} samples, by ≤ "
            f"{r.get('largest_difference', '?')} level",
        ]
        for r in payload["rows"]
    ]
    header = [
        "codec",
        "image",
        "base decode",
        "filter",
        "filter / base decode",
        f"same output, 1 and {payload['threads']} threads",
    ]
    return _table(header, rows)


def training_throughput() -> str:
    """Steps per CPU-hour of the feature-codec recipe, v2's settings first, then each speed setting added."""
    rows = load("throughput")["rows"]
    base = next(r for r in rows if r["mode"] == "head (v2)")
    return _table(
        ["threads", "settings", "CPU s / step", "steps / CPU-hour", "× v2"],
        [
            [
                str(r["threads"]),
                r["mode"],
                number(r["cpu_s_per_step"], ".3f"),
                number(r["steps_per_cpu_hour"], ",.0f"),
                number(base["cpu_s_per_step"] / r["cpu_s_per_step"], ".2f") + "×",
            ]
            for r in rows
        ],
    )


def dicm_gaps() -> str:
    """Points below the uncompressed model at 0.1 / 0.15 / 0.3 bpp: this family beside the published systems."""
    gaps = load("dicm")["gaps"]
    rates = list(next(iter(gaps.values())))
    rows = [[name] + [number(v, ".1f") for v in values.values()] for name, values in gaps.items()]
    return _table(["system"] + [f"{r} bpp" for r in rates], rows)


TABLES: dict[str, Callable[..., str]] = {
    "headline": headline,
    "results": results_table,
    "zoo": zoo_table,
    "dicm-targets": dicm_targets,
    "dicm-ablations": dicm_ablations,
    "dicm-gaps": dicm_gaps,
    "pixel-bd": pixel_bd,
    "pixel-sweep": pixel_sweep,
    "rate-keep": rate_keep,
    "rate-size": rate_size,
    "ssl-probe": ssl_probe,
    "restoration-bd": restoration_bd,
    "restoration-speed": restoration_speed,
    "training-throughput": training_throughput,
}


def render(expression: str) -> str:
    """One directive's text (without its braces)."""
    words = expression.split()
    if words and words[0] == "table":
        if len(words) < 2 or words[1] not in TABLES:
            raise EvidenceError(f"{{{{ {expression} }}}}: unknown table; known: {', '.join(TABLES)}")
        return TABLES[words[1]](*words[2:])
    return value(expression)


def render_markdown(markdown: str) -> str:
    """``markdown`` with every directive outside code replaced; braces left over outside code (a directive split
    over two lines) are an error, so that no directive reaches a page unrendered."""
    parts, end = [], 0
    for code in CODE.finditer(markdown):
        parts += [DIRECTIVE.sub(lambda m: render(m.group(1)), markdown[end : code.start()]), code.group(0)]
        end = code.end()
    parts.append(DIRECTIVE.sub(lambda m: render(m.group(1)), markdown[end:]))
    prose = CODE.sub("", "".join(parts[::2]))
    for text in prose.splitlines():
        if "{{" in text or "}}" in text:
            raise EvidenceError(f"unmatched '{{{{' or '}}}}' in {text.strip()!r} (a directive must stay on one line)")
    return "".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs hook: render the directives of every page; any error stops the build, naming the page."""
    from mkdocs.exceptions import PluginError

    try:
        return render_markdown(markdown)
    except (EvidenceError, KeyError, OSError, json.JSONDecodeError) as exc:
        raise PluginError(f"{page.file.src_path}: {exc}") from None


# Docstrings use Sphinx roles (:class:`X`, :func:`~a.b.c`); in the API reference they render as ":class:" before
# the code span. Drop the role (and the leading "~") so that what is left is the name, as code.
SPHINX_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj|const):(<code>)~?")


def on_page_content(html: str, page, config, files) -> str:
    """MkDocs hook: clean the Sphinx roles out of the rendered API reference."""
    return SPHINX_ROLE.sub(r"\1", html)
