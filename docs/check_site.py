"""Check the built documentation site in a real headless browser (Chromium).

Two passes over ``docs/_build/html`` (or the directory given):

1. **Static**: every local ``href``/``src`` of every page points at a file that exists
   (images non-empty), and every ``#fragment`` at an id of its target page.
2. **Browser**: each content page is opened in headless Chromium (JavaScript on, no
   network needed: MathJax is bundled), and the rendered DOM must hold no raw math
   (``\\(``, ``\\[`` left as text outside code) and, where the page has math, MathJax's
   output. Screenshots of chosen pages are saved.

Usage::

    HARL_DOCS_OFFLINE=1 python -m sphinx -b html docs docs/_build/html
    python docs/check_site.py docs/_build/html --screenshots docs/_build/screenshots

Exits with status 1 and one line per problem if anything fails. Needs the
``chromium`` binary (Debian: ``apt-get install -y chromium``) for the browser pass;
``--static-only`` skips it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: Pages screenshotted by default: the front page, an algorithm page, a tutorial, an API page.
DEFAULT_SHOTS = (
    "index.html",
    "algos/happo.html",
    "generated/tutorials/plot_3_sequential_vs_simultaneous.html",
    "api/objectives.html",
)
#: Generated pages with no prose of their own; still checked statically.
SKIP_BROWSER = ("_modules/", "genindex.html", "search.html", "py-modindex.html", "_static/", "_sources/")
RAW_MATH = re.compile(r"\\\(|\\\[")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@dataclass
class Page:
    """What the static pass reads from one HTML file."""

    ids: set[str] = field(default_factory=set)
    links: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    has_math: bool = False


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.page.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.page.ids.add(attrs["name"])
        if tag in ("a", "link") and attrs.get("href"):
            self.page.links.append(attrs["href"])
        if tag in ("img", "script") and attrs.get("src"):
            (self.page.images if tag == "img" else self.page.links).append(attrs["src"])
        if "math" in (attrs.get("class") or "").split():
            self.page.has_math = True


def parse_page(html: str) -> Page:
    """Ids, local links, images and whether the page holds math, from one page's HTML."""
    parser = _PageParser()
    parser.feed(html)
    return parser.page


def _local_target(page_path: Path, url: str) -> tuple[Path | None, str]:
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith(("mailto:", "javascript:", "data:")):
        return None, ""
    target = page_path if not parts.path else (page_path.parent / unquote(parts.path))
    return target, unquote(parts.fragment)


def static_problems(root: Path) -> tuple[list[str], dict[Path, Page]]:
    """Broken local links, missing or empty images and dangling fragments under ``root``."""
    root = root.resolve()
    pages = {path: parse_page(path.read_text(encoding="utf-8")) for path in sorted(root.rglob("*.html"))}
    problems = []
    for path, page in pages.items():
        name = path.relative_to(root)
        for url in page.links + page.images:
            target, fragment = _local_target(path, url)
            if target is None:
                continue
            target = target.resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{name}: broken link {url!r}")
                continue
            if url in page.images and target.stat().st_size == 0:
                problems.append(f"{name}: empty image {url!r}")
            if fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse_page(target.read_text(encoding="utf-8")).ids
                if fragment not in ids:
                    problems.append(f"{name}: no id {fragment!r} in {target.relative_to(root)}")
    return problems, pages


class _TextParser(HTMLParser):
    """The visible text of a rendered DOM, without code, scripts and MathJax's own output."""

    SKIP = {"script", "style", "pre", "code", "textarea", "mjx-container", "mjx-assistive-mml", "math"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.chunks: list[str] = []
        self.mathjax_nodes = 0

    def handle_starttag(self, tag, attrs):
        if tag == "mjx-container":
            self.mathjax_nodes += 1
        if tag in self.SKIP:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if not self.depth:
            self.chunks.append(data)


def rendered_problems(name: str, dom: str, has_math: bool) -> list[str]:
    """Raw TeX delimiters left in the rendered text, or math that MathJax did not typeset."""
    parser = _TextParser()
    parser.feed(dom)
    text = "".join(parser.chunks)
    problems = []
    for match in list(RAW_MATH.finditer(text))[:3]:
        snippet = " ".join(text[match.start() : match.start() + 40].split())
        problems.append(f"{name}: raw math left unrendered: {snippet!r}")
    if has_math and not parser.mathjax_nodes:
        problems.append(f"{name}: the page has math but MathJax rendered none (is MathJax bundled?)")
    return problems


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium binary: ``explicit``, ``$CHROMIUM``, or the first of the usual names on ``PATH``."""
    if explicit:
        return explicit
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def _chromium(binary: str, profile: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def render(binary: str, path: Path) -> str:
    """The page's DOM after its scripts ran (MathJax typesets within the time budget)."""
    with tempfile.TemporaryDirectory() as profile:
        result = _chromium(binary, profile, "--dump-dom", path.resolve().as_uri())
    if result.returncode != 0 or "<html" not in result.stdout:
        raise RuntimeError(f"chromium could not render {path}: {result.stderr.strip()[-300:]}")
    return result.stdout


def screenshot(binary: str, path: Path, out: Path, width: int = 1280, height: int = 1800) -> None:
    """A PNG of the top ``height`` pixels of the page, rendered ``width`` wide."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        result = _chromium(
            binary, profile, f"--screenshot={out.resolve()}", f"--window-size={width},{height}", path.resolve().as_uri()
        )
    if not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot of {path}: {result.stderr.strip()[-300:]}")


def browser_problems(root: Path, pages: dict[Path, Page], binary: str, jobs: int = 2) -> list[str]:
    """Renders every content page in Chromium and checks its math."""
    root = root.resolve()
    content = [p for p in pages if not str(p.relative_to(root)).startswith(SKIP_BROWSER)]

    def check(path: Path) -> list[str]:
        name = str(path.relative_to(root))
        try:
            return rendered_problems(name, render(binary, path), pages[path].has_math)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            return [f"{name}: {error}"]

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return [problem for result in pool.map(check, content) for problem in result]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", default="docs/_build/html", type=Path, help="the built HTML directory")
    parser.add_argument("--screenshots", type=Path, help="save screenshots of --shot pages here")
    parser.add_argument("--shot", action="append", help=f"page to screenshot (default: {', '.join(DEFAULT_SHOTS)})")
    parser.add_argument("--chromium", help="the Chromium binary (default: $CHROMIUM or chromium on PATH)")
    parser.add_argument("--jobs", type=int, default=2, help="pages rendered at once")
    parser.add_argument("--static-only", action="store_true", help="links and images only, no browser")
    args = parser.parse_args(argv)

    root = args.site.resolve()
    if not (root / "index.html").exists():
        print(f"no built site at {root}: run HARL_DOCS_OFFLINE=1 python -m sphinx -b html docs {root}")
        return 2
    problems, pages = static_problems(root)
    print(f"static: {len(pages)} pages, {len(problems)} problems")
    if not args.static_only:
        binary = find_chromium(args.chromium)
        if binary is None:
            print("chromium not found: apt-get install -y chromium (or pass --chromium / set $CHROMIUM)")
            return 2
        browser = browser_problems(root, pages, binary, jobs=args.jobs)
        checked = sum(not str(p.relative_to(root)).startswith(SKIP_BROWSER) for p in pages)
        print(f"browser: {checked} pages rendered in {binary}, {len(browser)} problems")
        problems += browser
        if args.screenshots:
            for shot in args.shot or DEFAULT_SHOTS:
                out = args.screenshots / (shot.replace("/", "__").removesuffix(".html") + ".png")
                screenshot(binary, root / shot, out)
                print(f"screenshot: {out}")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
