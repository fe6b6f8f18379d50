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
    # value normalisation, the documented default, wired once (through the critic) and updated by the trainer
    norm = namespace["value_loss"].value_norm
    assert norm is not None and norm.debiasing_term.item() > 0


def test_top_commands_are_the_ones_ci_runs():
    text = README.read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", text, re.S)[:2]
    # the tested torch first: a bare requirement would pull the newest (on Linux, CUDA) build
    assert commands[0] == "python -m pip install torch==2.13.0 && python -m pip install -e . && python recipes/train.py"
    assert commands[1] == 'python -m pip install -e ".[test]" && python -m pytest'
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci
    assert "pip install -q torch==2.13.0" in ci  # the torch the README pins is the one CI tests


def _extra_rows(page: str) -> dict[str, str]:
    """``{extra: its row's text}`` from the installation page's extras table."""
    table = page.split(".. list-table::", 1)[1]
    table = table[: re.search(r"\n\n(?=\S)", table).start()]  # up to the first unindented paragraph
    rows = re.split(r"\n   \* - ", table)[1:]
    return {re.match(r"``([\w-]+)``", row).group(1): row for row in rows if row.startswith("``")}


def test_installation_page_lists_what_each_extra_installs():
    import tomllib

    extras = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    rows = _extra_rows((README.parent / "docs" / "installation.rst").read_text())
    assert sorted(rows) == sorted(extras)
    for extra, requirements in extras.items():
        for requirement in requirements:
            nested = re.match(r"harl-torchrl\[(.*)\]", requirement)
            names = nested.group(1).split(",") if nested else [re.match(r"[\w-]+", requirement).group(0)]
            for name in names:
                assert f"``{name}``" in rows[extra], f"the installation page's {extra!r} row does not name {name}"


def test_docs_quickstart_shows_the_same_example():
    quickstart = (README.parent / "docs" / "quickstart.rst").read_text()
    example = _block("Use it in your own TorchRL loop", "python")
    indented = "".join("   " + line if line.strip() else line for line in example.splitlines(True))
    assert indented in quickstart
