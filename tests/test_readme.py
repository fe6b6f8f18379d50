"""The README's commands and example must keep working."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(heading: str, language: str) -> str:
    match = re.search(rf"## {re.escape(heading)}\n\n```{language}\n(.*?)```", README.read_text(), re.S)
    assert match, f"README lost its '{heading}' {language} block"
    return match.group(1)


@pytest.mark.slow
def test_own_loop_example_runs(capsys):
    namespace: dict = {}
    exec(compile(_block("Use it in your own TorchRL loop", "python"), "README.md", "exec"), namespace)
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 10  # one line per iteration
    assert namespace["updater"].last_order and sorted(namespace["updater"].last_order) == sorted(namespace["actors"])


def test_top_commands_are_the_ones_ci_runs():
    text = README.read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", text, re.S)[:2]
    assert commands[0] == "python -m pip install -e . && python recipes/train.py"
    assert commands[1] == 'python -m pip install -e ".[test]" && python -m pytest'
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci


def test_docs_quickstart_shows_the_same_example():
    quickstart = (README.parent / "docs" / "quickstart.rst").read_text()
    example = _block("Use it in your own TorchRL loop", "python")
    indented = "".join("   " + line if line.strip() else line for line in example.splitlines(True))
    assert indented in quickstart
