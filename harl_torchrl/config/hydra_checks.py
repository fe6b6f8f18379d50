"""Command-line checks around Hydra: group options, compose-time errors, a writable output dir.

Hydra enforces the schemas when it composes a recipe config, but reports the
failure in its own words (``Value '2.5' of type 'float' could not be converted to
Integer``), a missing option of a nested group (``env=vmas/balanse``) without the
options, and an output directory it cannot create as a raw ``OSError`` traceback.
:func:`compose_run_config` composes as Hydra does and turns each failure into a
:class:`~harl_torchrl.errors.ConfigError` naming the key, the value and the fix;
:func:`check_command_line` runs it on a recipe's arguments before ``hydra.main``;
:class:`OutputDirCheck` (a Hydra callback, configured in ``harl_torchrl/conf/config.yaml``)
checks the output directory.
"""

import re
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harl_torchrl.config.base import GroupConfig
from harl_torchrl.config.registry import store_schemas
from harl_torchrl.config.run import validate_run_config
from harl_torchrl.errors import ConfigError, unknown_choice


def run_dir_slug(choice: str) -> str:
    """A config-group choice as a directory name: ``"mamujoco/halfcheetah_2x3"`` -> ``"mamujoco_halfcheetah_2x3"``.

    Registered as the OmegaConf resolver ``harl_slug``, which names run directories after the
    env group a user chose (``outputs/happo_mamujoco_halfcheetah_2x3/...``).

    Example:
        >>> run_dir_slug("mamujoco/HalfCheetah_2x3")
        'mamujoco_halfcheetah_2x3'
    """
    return str(choice).replace("/", "_").replace("\\", "_").lower()


OmegaConf.register_new_resolver("harl_slug", run_dir_slug, replace=True)


def group_options(conf_dir: str | Path, group: str) -> list[str]:
    """Every option of config group ``group`` under ``conf_dir``, nested ones as ``sub/name``.

    Example:
        >>> from pathlib import Path
        >>> conf = Path(__file__).resolve().parents[1] / "conf"
        >>> "vmas/balance" in group_options(conf, "env")
        True
    """
    root = Path(conf_dir) / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def check_group_choices(overrides: Sequence[str], conf_dir: str | Path) -> None:
    """Raises :class:`ConfigError` for a ``group=option`` override naming no config file.

    Only the config groups that are directories of ``conf_dir`` are checked (e.g.
    ``algo``, ``env``, ``model``); keys with a dot are value overrides and are
    left to the schemas. Sweeps (``algo=happo,hatrpo``) check every option.

    Raises:
        ConfigError: listing the valid options and the closest one.

    Example:
        >>> from pathlib import Path
        >>> conf = Path(__file__).resolve().parents[1] / "conf"
        >>> try:
        ...     check_group_choices(["env=vmas/balanse"], conf)
        ... except ConfigError as err:
        ...     print(str(err).split(" Valid choices")[0])
        unknown env config 'vmas/balanse'. Did you mean 'vmas/balance'?
    """
    conf_dir = Path(conf_dir)
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # malformed overrides: Hydra reports them itself
        return
    for override in parsed:
        group = override.key_or_group
        if override.package or "." in group or group.startswith("hydra") or override.is_delete():
            continue  # value overrides, and Hydra's own groups (hydra/launcher=...: plugins add options)
        if not (conf_dir / group).is_dir():
            continue
        values: Any = override.value()
        candidates = list(values) if isinstance(values, (list, tuple)) else [values]
        if hasattr(values, "list"):
            candidates = list(values.list)
        for value in candidates:
            if not isinstance(value, str) or (conf_dir / group / f"{value}.yaml").is_file():
                continue
            err = unknown_choice(f"{group} config", value, group_options(conf_dir, group))
            raise ConfigError(f"{err} (select one with {group}=<choice>)")


def _override_values(overrides: Sequence[str]) -> dict[str, Any]:
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # malformed overrides: Hydra reports them itself
        return {}
    return {o.key_or_group: o.value() for o in parsed}


def _schema_of(cause: BaseException | None) -> Any:
    """The group schema an OmegaConf error is about (walking up from a list element)."""
    schema = getattr(cause, "object_type", None)
    node = getattr(cause, "parent_node", None)
    while not (isinstance(schema, type) and issubclass(schema, GroupConfig)) and node is not None:
        schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        node = node._get_parent()
    return schema


def explain_composition_error(err: Exception, overrides: Sequence[str] = ()) -> ConfigError:
    """A :class:`ConfigError` naming the key, the value and the fix for Hydra's compose error.

    Uses the schema OmegaConf names in the error (its ``object_type``) to give the
    expected type or the valid choices, and the schema's default as an example.

    Example:
        >>> from hydra.errors import ConfigCompositionException
        >>> from omegaconf import OmegaConf
        >>> from harl_torchrl.config import HAPPOConfig
        >>> try:
        ...     OmegaConf.merge(OmegaConf.structured(HAPPOConfig), {"epochs": 2.5})
        ... except Exception as cause:
        ...     err = ConfigCompositionException("Error merging override algo.epochs=2.5")
        ...     err.__cause__ = cause
        >>> print(explain_composition_error(err, ["algo.epochs=2.5"]))  # doctest: +NORMALIZE_WHITESPACE
        algo.epochs=2.5 has the wrong type: expected an integer.
        Fix: set algo.epochs to an integer, e.g. algo.epochs=5
    """
    cause = err.__cause__
    schema = _schema_of(cause)
    full_key = str(getattr(cause, "full_key", "") or "")
    if isinstance(cause, OmegaConfBaseException) and isinstance(schema, type) and issubclass(schema, GroupConfig):
        prefix = f"{schema.group}." if schema.group else ""
        path = full_key.removeprefix(prefix)
        top = path.split(".")[0].split("[")[0]
        value = _override_values(overrides).get(prefix + top)
        return schema.explain(cause, {top: value}, path=path)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    detail = [line.strip() for line in str(cause or "").splitlines() if line.strip()][:1]
    if lines and lines[0].startswith("Could not append to config. An item is already at"):
        key = lines[0].rsplit("'", 2)[-2] if "'" in lines[0] else ""
        return ConfigError(f"{key} already exists: '+' only adds new keys. Fix: drop the '+', e.g. {key}=<value>")
    return ConfigError(" ".join(lines[:1] + detail) + ". Fix: correct that override (python recipes/train.py --help)")


def compose_run_config(conf_dir: str | Path, overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Composes a recipe config as Hydra does, with every failure as a :class:`ConfigError`.

    Gives Hydra the schemas (:func:`~harl_torchrl.config.store_schemas`), checks the
    group options (:func:`check_group_choices`), then composes (types and choices
    enforced by the schemas).

    Raises:
        ConfigError: an unknown group option, a value of the wrong type or an
            invalid choice, naming the key, the value and the fix.

    Example:
        >>> from pathlib import Path
        >>> conf = Path(__file__).resolve().parents[1] / "conf"
        >>> compose_run_config(conf, ["algo=hatrpo"]).algo.max_kl
        0.01
    """
    store_schemas()
    check_group_choices(overrides, conf_dir)
    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3"):
        try:
            return compose(config_name, overrides=list(overrides))
        except HydraException as err:
            raise explain_composition_error(err, overrides) from None


def check_command_line(argv: Sequence[str], conf_dir: str | Path, config_name: str = "config") -> None:
    """Checks a recipe's command-line overrides before ``hydra.main`` runs.

    Gives Hydra the schemas (:func:`~harl_torchrl.config.store_schemas`, so that
    ``hydra.main`` composes after it), composes with the plain overrides and runs the
    whole config check (:func:`~harl_torchrl.config.validate_run_config`), so that a bad
    setting is reported in one line before Hydra creates the run directory. A multirun
    (``-m seed=0,1,2 algo=happo,mappo``) is expanded into its jobs as Hydra's basic
    sweeper would, and every job is checked before the launcher starts any: a bad value
    in the fifth job does not wait for four runs to finish. Other Hydra flags (``--cfg``,
    ``--info``, ...) get the group-option check only; Hydra handles the rest.

    Raises:
        ConfigError: see :func:`compose_run_config`; for a multirun job, prefixed with
            that job's overrides.

    Example:
        >>> from pathlib import Path
        >>> conf = Path(__file__).resolve().parents[1] / "conf"
        >>> try:
        ...     check_command_line(["-m", "seed=0,-1"], conf)
        ... except ConfigError as err:
        ...     print(str(err).split(":")[0])
        multirun job 2 of 2 (seed=-1)
    """
    store_schemas()
    overrides = [arg for arg in argv if not arg.startswith("-")]
    flags = set(argv) - set(overrides)
    if not flags - {"-m", "--multirun"}:  # other flags take arguments of their own (--cfg job)
        check_override_syntax(overrides, multirun=bool(flags))
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # malformed overrides after other flags: Hydra reports them itself
        return
    if flags - {"-m", "--multirun"} or (not flags and any(o.is_sweep_override() for o in parsed)):
        check_group_choices(overrides, conf_dir)
        return
    jobs = sweep_jobs(parsed) if flags else [overrides]
    for number, job in enumerate(jobs, start=1):
        try:
            validate_run_config(compose_run_config(conf_dir, job, config_name))
        except ConfigError as err:
            if not flags:
                raise
            shown = " ".join(o for o in job if not o.startswith("hydra")) or "no overrides"
            raise ConfigError(f"multirun job {number} of {len(jobs)} ({shown}): {err}") from None


def sweep_jobs(parsed: Sequence[Any]) -> list[list[str]]:
    """The jobs of a multirun: one override list per combination, in Hydra's basic-sweeper order.

    Example:
        >>> from hydra.core.override_parser.overrides_parser import OverridesParser
        >>> sweep_jobs(OverridesParser.create().parse_overrides(["seed=0,1", "algo=happo"]))
        [['seed=0', 'algo=happo'], ['seed=1', 'algo=happo']]
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return [job for batch in BasicSweeper.split_arguments(list(parsed), None) for job in batch]


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def resume_run_dir(argv: Sequence[str]) -> list[str]:
    r"""Expands ``resume=<run dir>`` into that run's own overrides, continuing in that directory.

    With ``resume=`` naming a run *directory*, the run's saved command-line overrides
    (``<run dir>/.hydra/overrides.yaml``, which Hydra writes) come first, then the ones
    given now (a key given now replaces the saved one), ``resume=<run dir>/checkpoint.pt``
    and, unless given, ``hydra.run.dir=<run dir>``: so ``python recipes/train.py
    resume=<run dir> total_frames=2_000_000`` continues the same run with nothing retyped.
    ``resume=<file>`` and command lines without ``resume=`` are returned unchanged. The
    value may be quoted for Hydra (``resume="'/data/run 1'"``, as a path with non-ASCII
    characters must be): one layer of matching quotes is removed before the directory is
    looked up, and the paths written back are quoted where Hydra needs it (:func:`hydra_quote`).

    Raises:
        ConfigError: the directory holds no ``checkpoint.pt``.

    Example:
        >>> import tempfile, pathlib
        >>> run = pathlib.Path(tempfile.mkdtemp())
        >>> (run / ".hydra").mkdir(); (run / "checkpoint.pt").touch()
        >>> _ = (run / ".hydra" / "overrides.yaml").write_text("- algo=hatrpo\n- seed=3\n- total_frames=100\n")
        >>> argv = resume_run_dir([f"resume={run}", "total_frames=200"])
        >>> [a.replace(str(run), "RUN") for a in argv]
        ['algo=hatrpo', 'seed=3', 'total_frames=200', 'resume=RUN/checkpoint.pt', 'hydra.run.dir=RUN']
    """
    given = [_unquoted(arg.split("=", 1)[1]) for arg in argv if arg.startswith("resume=")]
    if not given or not Path(given[-1]).is_dir():
        return list(argv)
    run_dir = Path(given[-1])
    checkpoint = run_dir / "checkpoint.pt"
    if not checkpoint.is_file():
        raise ConfigError(f"resume={run_dir}: the directory holds no checkpoint.pt; pass the checkpoint file itself")
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    saved = [str(o) for o in OmegaConf.load(saved_file)] if saved_file.is_file() else []
    now = [arg for arg in argv if not arg.startswith("resume=")]
    now_keys = {_override_key(arg) for arg in now if not arg.startswith("-")}
    skip = {"resume", "resume_override", "hydra.run.dir", "checkpoint.resume_without_replay"}  # this resume only
    merged = [o for o in saved if _override_key(o) not in now_keys and _override_key(o) not in skip]
    merged += [*now, f"resume={hydra_quote(str(checkpoint))}"]
    if "hydra.run.dir" not in now_keys:
        merged.append(f"hydra.run.dir={hydra_quote(str(run_dir))}")
    return merged


def hydra_quote(value: str) -> str:
    r"""``value`` as an override value Hydra reads back unchanged: as it is where it can, else single-quoted.

    Hydra's override grammar takes paths with inner spaces as they are, but needs quotes
    around non-ASCII characters, spaces at the ends and any of ``, = ( ) [ ] { } ' "``
    (inside quotes, a quote and the backslashes before it are escaped).

    Example:
        >>> hydra_quote("outputs/run 1/checkpoint.pt"), hydra_quote("/data/café/checkpoint.pt")
        ('outputs/run 1/checkpoint.pt', "'/data/café/checkpoint.pt'")
        >>> print(hydra_quote("/runs/it's"))
        '/runs/it\'s'
    """
    try:
        parsed = OverridesParser.create().parse_overrides([f"key={value}"])[0]
        if not parsed.is_sweep_override() and parsed.value() == value:
            return value
    except Exception:  # Hydra's lexer or parser refused it: quote it
        pass
    escaped = re.sub(r"(\\*)'", lambda m: m[1] * 2 + "\\'", value)
    escaped = re.sub(r"(\\+)$", lambda m: m[1] * 2, escaped)
    return f"'{escaped}'"


def shell_override(key: str, value: str) -> str:
    """``key=value`` as typed in a POSIX shell, the value quoted for Hydra first (:func:`hydra_quote`).

    Example:
        >>> print(shell_override("resume", "/data/café/run 1"))
        resume="'/data/café/run 1'"
    """
    quoted = hydra_quote(value)
    if quoted == value and not re.search(r"[\s\"'$`\\!*?;&|<>()]", value):
        return f"{key}={value}"
    if not re.search(r"[\"$`\\!]", quoted):
        return f'{key}="{quoted}"'
    return shlex.quote(f"{key}={quoted}")


def _unquoted(value: str) -> str:
    """An override's value as Hydra reads it (quotes removed), or with one layer of matching quotes stripped."""
    try:
        parsed = OverridesParser.create().parse_overrides([f"key={value}"])[0]
        if not parsed.is_sweep_override() and isinstance(parsed.value(), str):
            return parsed.value()
    except Exception:  # not valid Hydra syntax: check_override_syntax reports it
        pass
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def check_override_syntax(overrides: Sequence[str], *, multirun: bool = False) -> None:
    """Refuses, in one line, an override Hydra's grammar cannot read, with the quoting that fixes it.

    Hydra reports these with its lexer's exception (``LexerNoViableAltException:
    resume=/data/café/checkpoint.pt``) or "mismatched input"; a path the shell split at a
    space arrives as two arguments; a comma in a value makes a sweep, which a single run
    refuses. Flags (``-m``, ``--cfg job``, ...) are not passed here.

    Args:
        overrides: the command line's ``key=value`` arguments.
        multirun: ``-m`` was given (a comma then sweeps, as intended).

    Raises:
        ConfigError: naming the argument and the fix, e.g. ``resume="'/data/café/checkpoint.pt'"``.

    Example:
        >>> try:
        ...     check_override_syntax(["algo=happo", "resume=/data/café/checkpoint.pt"])
        ... except ConfigError as err:
        ...     print(str(err).split("Fix: ")[1])
        quote the value for Hydra, inside the shell's quotes: resume="'/data/café/checkpoint.pt'"
    """
    parser = OverridesParser.create()
    for index, override in enumerate(overrides):
        key, equals, value = override.partition("=")
        try:
            parsed = parser.parse_overrides([override])[0]
        except Exception as err:
            first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
            start = next((j for j in range(index - 1, -1, -1) if "=" in overrides[j]), None)
            if not equals and start is not None:  # a path the shell split at its spaces
                rest = overrides[start + 1 :]
                rest = rest[: next((j for j, arg in enumerate(rest) if "=" in arg), len(rest))]
                previous_key, _, previous_value = overrides[start].partition("=")
                fix = shell_override(previous_key.lstrip("+~"), " ".join([_unquoted(previous_value), *rest]))
                raise ConfigError(
                    f"cannot read the argument {override!r}: it is not key=value. If it is the rest of "
                    f"{previous_key}= (a path with a space, split by the shell), quote the whole value. Fix: {fix}"
                ) from None
            if equals and key and _parses(parser, f"{key}={hydra_quote(value)}"):
                raise ConfigError(
                    f"cannot read the override {override!r}: Hydra takes a value with non-ASCII characters, "
                    "spaces at its ends or any of , = ( ) [ ] { } ' \" only in quotes. "
                    f"Fix: quote the value for Hydra, inside the shell's quotes: {shell_override(key, value)}"
                ) from None
            raise ConfigError(
                f"cannot read the override {override!r} ({first}). Fix: write each setting as key=value "
                "(--help lists them)"
            ) from None
        if parsed.is_sweep_override() and not multirun and "," in value and not value.lstrip().startswith("["):
            raise ConfigError(
                f"the override {override!r} is a sweep (a comma in its value) in a single run. Fix: add -m to run "
                f"each value, or, for one value with a comma (a path), quote it: {shell_override(key, value)}"
            )


def _parses(parser: Any, override: str) -> bool:
    try:
        parser.parse_overrides([override])
    except Exception:
        return False
    return True


def _check_writable(directory: str, key: str) -> None:
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        sys.exit(
            f"error: {key}={directory} is not a writable directory ({err.strerror or err}). "
            f"Fix: choose a directory you can write to, e.g. {key}=outputs/my_run"
        )


class OutputDirCheck(Callback):
    """Hydra callback: exits with one line when the run (or sweep) directory cannot be written.

    Configured in ``harl_torchrl/conf/config.yaml`` under ``hydra.callbacks``; Hydra calls
    it after composing the config and before it creates the output directory.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Checks ``hydra.run.dir``."""
        _check_writable(_resolved(config, "run"), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Checks ``hydra.sweep.dir``."""
        _check_writable(_resolved(config, "sweep"), "hydra.sweep.dir")


def _resolved(config: DictConfig, mode: str) -> str:
    """``hydra.<mode>.dir``, resolved.

    Its ``${hydra:...}`` parts need the Hydra config set, which Hydra itself does only once
    the job starts (reading it earlier printed a five-line warning on every run).
    """
    from hydra.core.hydra_config import HydraConfig

    if "runtime" in config.hydra:  # a whole Hydra config (a partial one has nothing to resolve through it)
        HydraConfig.instance().set_config(config)
    return str(config.hydra[mode].dir)
