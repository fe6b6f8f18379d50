"""Paths on the command line: what Hydra's grammar cannot read is one line saying how to quote it (issue 27 item 14).

All in-process: the checks run on the argument lists the shell would hand over
(:func:`shlex.split` plays the shell), before Hydra or torch start.
"""

import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from harl_torchrl.config.hydra_checks import (
    check_command_line,
    check_override_syntax,
    compose_run_config,
    hydra_quote,
    resume_run_dir,
    shell_override,
)
from harl_torchrl.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "recipes" / "conf"
ODD = ["run é 1", "日本語", "a,b", "it's", "(x) [y]", "trailing ", "back\\slash"]


def _hydra_value(override: str):
    return OverridesParser.create().parse_overrides([override])[0].value()


@pytest.mark.parametrize("name", ODD)
def test_quoting_round_trips_through_the_shell_and_hydra(name):
    path = f"/data/{name}/checkpoint.pt"
    assert _hydra_value(f"resume={hydra_quote(path)}") == path
    (argument,) = shlex.split(shell_override("resume", path))  # what the shell hands over
    assert _hydra_value(argument) == path


def _refused(argv):
    with pytest.raises(ConfigError) as info:
        check_command_line(argv, CONF)
    message = str(info.value)
    assert "\n" not in message and "Fix: " in message
    return message


@pytest.mark.parametrize("key", ["resume", "hydra.run.dir", "+env.scenario_kwargs.note"])
def test_a_value_hydra_cannot_read_says_how_to_quote_it(key):
    """Regression: Hydra's raw LexerNoViableAltException, with no word of quoting."""
    value = "/data/café/run 1"
    message = _refused(["algo=happo", *shlex.split(f"'{key}={value}'")])
    assert message.startswith(f"cannot read the override '{key}={value}': Hydra takes a value with non-ASCII")
    fix = message.split("inside the shell's quotes: ")[1]
    assert fix == f"""{key}="'{value}'\""""
    assert _hydra_value(shlex.split(fix)[0]) == value


def test_a_path_the_shell_split_at_its_spaces_is_put_back_together():
    message = _refused(shlex.split("resume=/data/run é 1/checkpoint.pt total_frames=80"))
    assert message.startswith("cannot read the argument 'é': it is not key=value. If it is the rest of resume=")
    assert message.endswith("""Fix: resume="'/data/run é 1/checkpoint.pt'\"""")


def test_a_comma_in_a_single_run_is_a_sweep_and_says_so():
    message = _refused(["resume=/data/a,b/checkpoint.pt"])
    assert "is a sweep (a comma in its value) in a single run. Fix: add -m" in message
    assert message.endswith("""quote it: resume="'/data/a,b/checkpoint.pt'\"""")
    check_override_syntax(["seed=0,1"], multirun=True)  # with -m a comma sweeps, as meant
    check_override_syntax(["model.hidden_sizes=[16,16]"])  # a list is no sweep


def test_other_hydra_flags_keep_their_arguments():
    check_command_line(["--cfg", "job"], CONF)  # "job" is --cfg's argument, not an override


@pytest.fixture
def odd_run_dir(tmp_path):
    run = tmp_path / "run é 1"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoint.pt").touch()
    saved = ["algo=hatd3", "seed=3", "checkpoint.resume_without_replay=true", f"hydra.run.dir={hydra_quote(str(run))}"]
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o!r}\n" for o in saved))
    return run


@pytest.mark.parametrize("quoting", ["hydra", "double", "none"])
def test_a_quoted_resume_dir_is_found_and_written_back_quoted(odd_run_dir, quoting):
    """Regression: resume="'<run dir>'" kept its quotes in the path, so the run dir was never found."""
    value = {"hydra": f"'{odd_run_dir}'", "double": f'"{odd_run_dir}"', "none": str(odd_run_dir)}[quoting]
    argv = resume_run_dir([f"resume={value}", "total_frames=200"])
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(argv)}
    assert parsed["resume"] == str(odd_run_dir / "checkpoint.pt")
    assert parsed["hydra.run.dir"] == str(odd_run_dir)
    assert parsed["algo"] == "hatd3" and parsed["seed"] == 3 and parsed["total_frames"] == 200
    assert "checkpoint.resume_without_replay" not in parsed, "the option applies to the resume it was given for"
    cfg = compose_run_config(CONF, [o for o in argv if not o.startswith("hydra.")])
    assert cfg.resume == str(odd_run_dir / "checkpoint.pt")


def test_the_resume_command_a_stopped_run_prints_finds_its_run_dir(odd_run_dir):
    """The command printed on SIGINT quotes the run dir; resume_run_dir must take that quoting off again."""
    from harl_torchrl.run.stop import RunStopped

    command = RunStopped("SIGINT", odd_run_dir / "checkpoint.pt", 10).resume_command("harl-train")
    argv = resume_run_dir(shlex.split(command)[1:])
    check_override_syntax(argv)
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(argv)}
    assert parsed["resume"] == str(odd_run_dir / "checkpoint.pt") and parsed["hydra.run.dir"] == str(odd_run_dir)
