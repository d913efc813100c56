"""The documentation: evidence figures are rendered from the JSON in docs/ (docs/hooks/evidence.py, the MkDocs
hook), the README's results table is that renderer's output, and the README's test command is CI's."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _load_hook():
    spec = importlib.util.spec_from_file_location("icm_docs_evidence", DOCS / "hooks" / "evidence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


evidence = _load_hook()


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.parts)


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_directive_of_every_page_renders(page):
    text = page.read_text(encoding="utf-8")
    rendered = evidence.render_markdown(text)
    assert "{{" not in evidence.CODE.sub("", rendered)


def test_evidence_pages_carry_figures_from_json():
    # The evidence pages hold directives, not typed figures: each names its JSON and renders tables from it.
    for name in ("index", "pixel-codecs", "feature-codec", "rate-control", "ssl"):
        text = (DOCS / "evidence" / f"{name}.md").read_text(encoding="utf-8")
        assert re.search(r"\{\{ table [a-z-]+", text), name
    page = evidence.render_markdown((DOCS / "evidence" / "feature-codec.md").read_text(encoding="utf-8"))
    bd = json.loads((DOCS / "dicm-evidence-dev200.json").read_text())["vs_hevc444"]["bd_rate_pct"]
    assert f"{bd:+.1f} %".replace("-", "\u2212") in page


def test_readme_results_table_is_the_rendered_one():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert evidence.headline("docs/") in readme, "regenerate it: python -c 'evidence.headline(\"docs/\")'"
    top1 = json.loads((DOCS / "dev200-results.json").read_text())["uncompressed"]["image_top1"]
    assert f"{top1:.1f} % top-1 on the uncompressed crops" in " ".join(readme.split())


def test_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    links = re.findall(r"\]\(((?:docs|src)/[^)#]+)", readme)
    assert links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing


def test_readme_test_command_is_what_ci_runs():
    command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert "mkdocs build --strict" in command
    assert command in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()


def test_results_agree_with_the_evidence_scripts_json():
    # docs/dev200-results.json is transcribed; where another evidence file holds the same figure they must agree.
    results = {r["codec"]: r for r in json.loads((DOCS / "dev200-results.json").read_text())["rows"]}
    dicm = json.loads((DOCS / "dicm-evidence-dev200.json").read_text())
    pixel = json.loads((DOCS / "pixel-evidence-dev200.json").read_text())
    assert results["icm-dicm-lite0"]["bd_rate_top1"] == round(dicm["vs_hevc444"]["bd_rate_pct"], 1)
    assert results["icm-dicm-lite0"]["bd_top1"] == round(dicm["vs_hevc444"]["bd_metric"], 2)
    for family in ("icm-mse", "icm-mmd"):
        for metric, rate, delta in (("top1", "bd_rate_top1", "bd_top1"), ("psnr", "bd_rate_psnr", "bd_psnr")):
            row = evidence.lookup(pixel, f"[test={family},anchor=hevc444,metric={metric},data=lite0]")
            assert results[family][rate] == round(row["bd_rate_pct"], 1), (family, metric)
            assert results[family][delta] == round(row["bd_metric"], 2), (family, metric)
        zoo = json.loads((ROOT / "src" / "icmkit" / "zoo" / f"{family}.json").read_text())["entries"]
        assert results[family]["bpp_lo"] == round(zoo[0]["metrics"]["bpp"], 3)
        assert results[family]["bpp_hi"] == round(zoo[-1]["metrics"]["bpp"], 3)
        assert results[family]["points"] == len(zoo)
    uncompressed = json.loads((DOCS / "dev200-results.json").read_text())["uncompressed"]
    assert uncompressed == dicm["uncompressed"]


@pytest.mark.parametrize(
    "directive",
    [
        "{{ nowhere vs_hevc444/bd_rate_pct }}",
        "{{ dicm vs_nothing/bd_rate_pct }}",
        "{{ pixel [test=icm-mmd]/bd_rate_pct }}",  # matches many rows, not one
        "{{ table no-such-table }}",
        "{{ dicm vs_hevc444 }}",  # not a number
        "{{ dicm vs_hevc444/bd_rate_pct\n| .1f }}",  # split over two lines
    ],
)
def test_a_bad_directive_stops_the_build(directive):
    with pytest.raises(evidence.EvidenceError):
        evidence.render_markdown(f"text {directive} text")


def test_numbers_use_the_docs_minus_sign_and_missing_values_a_dash():
    assert evidence.number(-80.498, "+.1f") == "\u221280.5"
    assert evidence.number(float("nan"), ".1f") == "—"
    assert evidence.render("dicm vs_hevc444/overlap_lo | .4g") == "67.5"
