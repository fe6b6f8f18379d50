"""docs/check_site.py: the static link check, the raw-math check, and the built site in headless Chromium."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("HARL_DOCS_SITE", ROOT / "docs" / "_build" / "html"))
_spec = importlib.util.spec_from_file_location("check_site", ROOT / "docs" / "check_site.py")
check_site = importlib.util.module_from_spec(_spec)
sys.modules["check_site"] = check_site  # its dataclasses look their module up
_spec.loader.exec_module(check_site)

CHROMIUM = check_site.find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed: apt-get install -y chromium (Debian), or set $CHROMIUM"
)


def _site(tmp_path, pages):
    for name, html in pages.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<html><body>{html}</body></html>")
    return tmp_path


def test_static_check_accepts_a_consistent_site(tmp_path):
    (tmp_path / "img.png").write_bytes(b"\x89PNG")
    site = _site(
        tmp_path,
        {
            "index.html": '<a href="sub/page.html#part">x</a><a href="#top">y</a><img src="img.png"><p id="top"></p>'
            '<a href="https://example.org/missing.html">external</a>',
            "sub/page.html": '<h2 id="part">p</h2><a href="../index.html">back</a>',
        },
    )
    problems, pages = check_site.static_problems(site)
    assert problems == []
    assert len(pages) == 2


def test_static_check_finds_broken_links_fragments_and_images(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    site = _site(
        tmp_path,
        {
            "index.html": '<a href="gone.html">a</a><a href="other.html#nope">b</a>'
            '<img src="missing.png"><img src="empty.png"><a href="#absent">c</a>',
            "other.html": '<p id="here"></p>',
        },
    )
    problems, _ = check_site.static_problems(site)
    text = "\n".join(problems)
    assert "broken link 'gone.html'" in text
    assert "no id 'nope' in other.html" in text
    assert "broken link 'missing.png'" in text
    assert "empty image 'empty.png'" in text
    assert "no id 'absent' in index.html" in text
    assert len(problems) == 5


def test_raw_math_is_flagged_outside_code_only():
    raw = check_site.rendered_problems("p.html", r"<p>the factor \(M\) and \[x\]</p>", has_math=False)
    assert len(raw) == 2 and "raw math left unrendered" in raw[0]
    in_code = check_site.rendered_problems("p.html", r"<pre>print('\(x\)')</pre><code>\[y\]</code>", has_math=False)
    assert in_code == []
    rendered = '<span class="math"><mjx-container><mjx-math>M</mjx-math></mjx-container></span>'
    assert check_site.rendered_problems("p.html", rendered, has_math=True) == []
    untypeset = check_site.rendered_problems("p.html", '<span class="math">M</span>', has_math=True)
    assert untypeset and "MathJax rendered none" in untypeset[0]


@needs_chromium
def test_chromium_pass_flags_a_page_without_mathjax(tmp_path):
    site = _site(tmp_path, {"index.html": r'<p>inline <span class="math">\(M^{i_{1:m}}\)</span></p>'})
    problems = check_site.browser_problems(site, check_site.static_problems(site)[1], CHROMIUM, jobs=1)
    assert any("raw math left unrendered" in p for p in problems), problems
    assert any("MathJax rendered none" in p for p in problems), problems


@pytest.mark.slow
@needs_chromium
@pytest.mark.skipif(
    not (SITE / "index.html").exists(),
    reason=f"no built docs at {SITE}: HARL_DOCS_OFFLINE=1 python -m sphinx -b html docs docs/_build/html",
)
def test_built_site_renders_in_chromium(tmp_path, capsys):
    status = check_site.main([str(SITE), "--screenshots", str(tmp_path), "--jobs", "2"])
    out = capsys.readouterr().out
    assert status == 0, out
    shots = sorted(tmp_path.glob("*.png"))
    assert len(shots) == len(check_site.DEFAULT_SHOTS)
    assert all(shot.stat().st_size > 10_000 for shot in shots)
