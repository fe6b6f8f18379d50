"""Guards every training loop shares: the resume check and the non-finite (NaN) stop.

Both the on-policy recipe and the off-policy loop call them, in this order::

    state, meta = load_checkpoint(cfg.resume, return_metadata=True)
    check_resume(meta, cfg, overrides=cfg.resume_override)       # before anything is built
    check_total_frames(cfg.total_frames, meta["frames"], cfg.resume)
    check_schedule_horizon(meta, cfg, overrides=cfg.resume_override)
    ...
    for batch in collector:
        diagnostics = update(batch)
        check_finite(iteration, diagnostics, modules)               # before logging and saving
        save_checkpoint(...)

**Resume check.** A checkpoint records the algo, env and model config of the run that
wrote it (:func:`~harl_torchrl.utils.checkpoint.run_metadata`). Resuming compares them
key by key with the new run's config; any difference (another algorithm, scenario,
number of agents, action layout, hidden sizes, learning rate, ...) is refused with the
list of differences, unless each differing key is named in ``resume_override`` (a key
also covers its children: ``env.scenario_kwargs`` covers ``env.scenario_kwargs.n_agents``;
``"*"`` covers everything). An accepted difference takes effect: optimiser settings such as
``algo.actor_lr`` come from the new config (the checkpoint provides the moments and step
counts, see :meth:`OnPolicyComponents.load_state_dict
<harl_torchrl.algorithms.OnPolicyComponents.load_state_dict>`); an accepted env difference
means the saved env state no longer fits, so the resumed run starts fresh episodes.

**Non-finite stop.** After each update, every scalar diagnostic (losses, gradient norms,
KL, ...) and every parameter and buffer of the trained modules must be finite; the first
that is not stops the run with :class:`NonFiniteError` naming the iteration and the
quantity. Since the check runs before the checkpoint is written, the last checkpoint on
disk is the last good one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import nn

from harl_torchrl.config import config_to_dict
from harl_torchrl.errors import ConfigError
from harl_torchrl.rollout_state import restore_rollout_state
from harl_torchrl.utils.checkpoint import CheckpointError, load_checkpoint

#: The config groups a checkpoint's config is compared on.
COMPARED_GROUPS = ("algo", "env", "model")
_ABSENT = "<absent>"

#: Set in a resumed state by :func:`open_resume` under ``checkpoint.resume_without_replay=true``:
#: the components start with a fresh replay buffer and a fresh random warm-up
#: (:meth:`~harl_torchrl.off_policy.OffPolicyComponents.load_state_dict`).
FRESH_REPLAY = "fresh_replay"

#: Compared keys added after checkpoints were first written, each with the value that does what
#: runs did before the key existed: a checkpoint without the key reads as that value, so it
#: resumes into a run that keeps it (and is refused, as any difference, by one that changes it).
ADDED_KEYS: dict[str, Any] = {"algo.lr_decay": "none", "env.normalize_actions": False, "env.zero_contact_forces": False}


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinity; the message names the iteration and the quantity."""


def _flatten(tree: Any, prefix: str) -> dict[str, Any]:
    if isinstance(tree, Mapping) and tree:
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}.{key}"))
        return flat
    return {prefix: tree}


def config_differences(saved: Mapping[str, Any], cfg: Any) -> dict[str, tuple[Any, Any]]:
    """``{"algo.actor_lr": (checkpoint value, run value), ...}`` over the compared groups.

    Args:
        saved: a checkpoint's ``meta["config"]`` (plain dicts).
        cfg: the run's config (a :class:`~harl_torchrl.config.RunConfig`, or its plain form:
            both are read through :func:`~harl_torchrl.config.config_to_dict`).

    A key of :data:`ADDED_KEYS` that the checkpoint lacks reads as its value there.

    Example:
        >>> saved = {"algo": {"name": "happo", "actor_lr": 5e-4}, "env": {"n": 2}, "model": {}}
        >>> run = {"algo": {"name": "happo", "actor_lr": 1e-3}, "env": {"n": 2}, "model": {}}
        >>> config_differences(saved, run)
        {'algo.actor_lr': (0.0005, 0.001)}
    """
    differences = {}
    run = config_to_dict(cfg)
    for group in COMPARED_GROUPS:
        old = _flatten(config_to_dict(saved.get(group, {})), group)
        new = _flatten(run.get(group, {}), group)
        for key in sorted(old.keys() | new.keys()):
            a, b = old.get(key, ADDED_KEYS.get(key, _ABSENT)), new.get(key, _ABSENT)
            if not _same_value(a, b):
                differences[key] = (a, b)
    return differences


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _covered(key: str, overrides: Sequence[str]) -> bool:
    return any(o == "*" or key == o or key.startswith(f"{o}.") for o in overrides)


def check_resume(meta: Mapping[str, Any], cfg: Any, *, overrides: Sequence[str] = (), path: Any = None) -> list[str]:
    """Refuses to resume a checkpoint into a run whose algo, env or model config differs.

    Args:
        meta: the checkpoint's metadata (``load_checkpoint(..., return_metadata=True)[1]``).
        cfg: the new run's config.
        overrides: keys allowed to differ (``resume_override``), each covering its children;
            ``"*"`` allows any difference.
        path: the checkpoint's path, for the message.

    Returns:
        The differing keys that ``overrides`` accepted (for the run's log).

    Raises:
        ConfigError: a difference not covered by ``overrides`` (the message lists each as
            ``key: checkpoint value -> this run's value`` and says how to proceed), or an
            override naming no key of either config (a typo would otherwise go unnoticed).

    Example:
        >>> saved = {"algo": {"name": "happo", "actor_lr": 5e-4}, "env": {}, "model": {}}
        >>> meta = {"algorithm": "happo", "config": saved}
        >>> run = {"algo": {"name": "happo", "actor_lr": 1e-3}, "env": {}, "model": {}}
        >>> check_resume(meta, run, overrides=["algo.actor_lr"])
        ['algo.actor_lr']
        >>> check_resume(meta, run)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        harl_torchrl.errors.ConfigError: cannot resume ...: algo.actor_lr: 0.0005 (checkpoint) -> 0.001 (this run)...
    """
    overrides = [str(o) for o in (overrides or [])]
    saved = meta.get("config")
    where = f"checkpoint {path}" if path is not None else "the checkpoint"
    if not isinstance(saved, Mapping):
        raise ConfigError(f"cannot resume from {where}: it records no config to compare with")
    known = {"total_frames"}  # not compared here: check_schedule_horizon reads its override
    run = config_to_dict(cfg)
    for group in COMPARED_GROUPS:
        known |= set(_flatten(config_to_dict(saved.get(group, {})), group))
        known |= set(_flatten(run.get(group, {}), group))
    unknown = [o for o in overrides if o != "*" and not any(k == o or k.startswith(f"{o}.") for k in known)]
    if unknown:
        raise ConfigError(
            f"resume_override={unknown} names no key of the algo/env/model config (a typo?); "
            "give dotted keys such as algo.actor_lr or env.num_envs"
        )
    differences = config_differences(saved, cfg)
    refused = {k: v for k, v in differences.items() if not _covered(k, overrides)}
    if refused:
        shown = dict(refused)
        note, allow = "", list(refused)
        if "algo.name" in refused:
            # another algorithm brings its own settings: name the algorithm, count the rest
            others = [k for k in refused if k.startswith("algo.") and k != "algo.name"]
            for key in others:
                del shown[key]
            extra = f" ({len(others)} other algo settings differ with it)" if others else ""
            saved_algo = refused["algo.name"][0]
            note = f" The checkpoint was written by {saved_algo!r}{extra}: resume with algo={saved_algo}."
            allow = ["algo", *[k for k in refused if not k.startswith("algo.")]]
        listed = "; ".join(f"{k}: {a!r} (checkpoint) -> {b!r} (this run)" for k, (a, b) in shown.items())
        raise ConfigError(
            f"cannot resume from {where}: the run's config differs: {listed}.{note} Resume with the "
            f"checkpoint's values, or, to fine-tune into the new setting on purpose, allow these keys with "
            f"resume_override=[{','.join(allow)}] (see docs/checkpoints.rst)"
        )
    return sorted(differences)


def check_total_frames(total_frames: int, checkpoint_frames: int, path: Any = None) -> None:
    """Refuses a resume whose ``total_frames`` leaves nothing to train.

    Raises:
        ConfigError: ``total_frames`` is at or below the frames the checkpoint already has.

    Example:
        >>> check_total_frames(2000, 1000)
        >>> check_total_frames(1000, 1000)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        harl_torchrl.errors.ConfigError: total_frames=1000 is not above the 1000 frames the checkpoint ...
    """
    if total_frames <= checkpoint_frames:
        where = f" {path}" if path is not None else ""
        raise ConfigError(
            f"total_frames={total_frames} is not above the {checkpoint_frames} frames the checkpoint{where} "
            f"already has: nothing would be trained. Give total_frames > {checkpoint_frames} to train further"
        )


def check_schedule_horizon(
    meta: Mapping[str, Any], cfg: Any, *, overrides: Sequence[str] = (), path: Any = None
) -> None:
    r"""Refuses a resume whose new ``total_frames`` would bend a running learning-rate decay.

    With ``algo.lr_decay=linear`` the learning rates are scaled by :math:`1 - t / T` (``t``
    frames so far, ``T`` the run's ``total_frames``). Resuming with another ``T`` changes the
    factor at once: a 10M run resumed at 3M with ``total_frames=4_000_000`` would drop from
    0.70 to 0.25 of its base rate, a run that had ended would jump back from 0. Both are
    refused unless ``overrides`` (``resume_override``) names ``total_frames``. Checkpoints
    written before they recorded ``total_frames`` are not checked.

    Raises:
        ConfigError: the factor would change at the resume, not allowed by ``overrides``.

    Example:
        >>> meta = {"frames": 3_000_000, "total_frames": 10_000_000}
        >>> run = {"total_frames": 4_000_000, "algo": {"lr_decay": "linear"}}
        >>> check_schedule_horizon(meta, run, overrides=["total_frames"])
        >>> check_schedule_horizon(meta, run)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        harl_torchrl.errors.ConfigError: total_frames=4,000,000 differs from the 10,000,000 ... from 0.70 to 0.25 ...
    """
    run = config_to_dict(cfg)
    saved, new = meta.get("total_frames"), int(run.get("total_frames"))
    decay = str((run.get("algo") or {}).get("lr_decay") or "none")
    if saved is None or decay == "none" or int(saved) == new or _covered("total_frames", overrides):
        return
    frames = int(meta["frames"])
    before, after = max(0.0, 1 - frames / int(saved)), max(0.0, 1 - frames / new)
    where = f" {path}" if path is not None else ""
    raise ConfigError(
        f"total_frames={new:,} differs from the {int(saved):,} that the run of checkpoint{where} was scheduled "
        f"for, and algo.lr_decay={decay} scales the learning rates by 1 - frames / total_frames: at "
        f"{frames:,} frames they would jump from {before:.2f} to {after:.2f} of their base value. Fix: keep "
        f"total_frames={int(saved)} (a run stopped early resumes from its checkpoint), or accept the new "
        "schedule with resume_override=[total_frames]"
    )


def check_finite(
    iteration: int,
    diagnostics: Mapping[str, float] | TensorDictBase,
    modules: Mapping[str, nn.Module] | None = None,
    *,
    source: str = "",
) -> None:
    """Stops training at the first NaN or infinity in the diagnostics or the modules' tensors.

    Args:
        iteration: the iteration just completed (named in the message).
        diagnostics: flat ``{"agent_1/loss_objective": value}`` scalars, or a TensorDict
            (the updater's output, or a collected batch: every floating entry is checked).
        modules: ``{name: module}`` whose parameters and buffers must stay finite.
        source: named before the quantity, e.g. ``"collected batch"``.

    Raises:
        NonFiniteError: naming the iteration, the quantity and its value.

    Example:
        >>> check_finite(3, {"agent_0/loss_objective": 0.5})
        >>> check_finite(3, {"agent_1/loss_objective": float("nan")})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        harl_torchrl.run_guard.NonFiniteError: iteration 3: agent_1/loss_objective is nan...
    """
    hint = (
        "; training stopped before this iteration's checkpoint, so the last checkpoint on disk is the last "
        "good one (lower the learning rate or check the environment's rewards)"
    )
    if isinstance(diagnostics, TensorDictBase):
        items = (
            ("/".join(k) if isinstance(k, tuple) else k, v)
            for k, v in diagnostics.items(include_nested=True, leaves_only=True)
        )
    else:
        items = diagnostics.items()
    # name the cause rather than a symptom: losses first, then gradient norms, then the rest
    items = sorted(items, key=lambda item: 0 if "loss" in item[0] else 1 if "grad_norm" in item[0] else 2)
    where = f"{source} " if source else ""
    for name, value in items:
        name = f"{where}{name}"
        if isinstance(value, torch.Tensor):
            if not value.is_floating_point() or bool(torch.isfinite(value).all()):
                continue
            bad = value[~torch.isfinite(value)].flatten()[0].item()
            raise NonFiniteError(f"iteration {iteration}: {name} is {bad}{hint}")
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise NonFiniteError(f"iteration {iteration}: {name} is {value}{hint}")
    for module_name, module in (modules or {}).items():
        for kind, named in (("parameter", module.named_parameters()), ("buffer", module.named_buffers())):
            for name, tensor in named:
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    raise NonFiniteError(f"iteration {iteration}: {module_name} {kind} {name} is not finite{hint}")


@dataclass
class ResumePoint:
    """A checkpoint accepted for resuming: its state, metadata and the differences allowed.

    Attributes:
        path: the checkpoint file.
        state: its training state (as saved by the loop).
        meta: its metadata (:func:`~harl_torchrl.utils.checkpoint.run_metadata`).
        accepted: config keys that differ and were allowed by ``resume_override``.
    """

    path: Path
    state: dict[str, Any]
    meta: dict[str, Any]
    accepted: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        """Frames the checkpointed run had collected."""
        return int(self.meta.get("frames", self.state.get("frames", 0)))

    @property
    def iteration(self) -> int:
        """Iterations the checkpointed run had completed."""
        return int(self.meta.get("iteration", self.state.get("iteration", 0)))

    @property
    def env_changed(self) -> bool:
        """Whether an env setting was overridden (the saved env state then no longer applies)."""
        return any(key == "env" or key.startswith("env.") for key in self.accepted)


def open_resume(cfg: Any, map_location: Any = "cpu") -> ResumePoint | None:
    """Loads ``cfg.resume`` and runs every resume check; ``None`` when ``cfg.resume`` is unset.

    Verifies the file (:func:`~harl_torchrl.utils.checkpoint.load_checkpoint`), compares
    its config (:func:`check_resume`, honouring ``cfg.resume_override``) and the budget
    (:func:`check_total_frames`) and the learning-rate schedule's horizon
    (:func:`check_schedule_horizon`). Call it before building anything.

    Raises:
        CheckpointError: the file is missing, damaged or not a checkpoint.
        ConfigError: the config differs without an override, or ``total_frames`` is too small.
    """
    run = config_to_dict(cfg)
    path, overrides = run.get("resume"), list(run.get("resume_override") or [])
    if not path:
        return None
    path = Path(str(path))
    without_replay = bool((run.get("checkpoint") or {}).get("resume_without_replay"))
    try:
        state, meta = load_checkpoint(path, map_location, sidecars=not without_replay, return_metadata=True)
    except CheckpointError as err:
        raise resume_error(err) from None
    if "config" not in meta:
        raise CheckpointError(f"checkpoint {path}: it records no run config (not written by a training loop)")
    check_family(meta, getattr(getattr(cfg, "algo", None), "kind", None), path)
    accepted = check_resume(meta, run, overrides=overrides, path=path)
    point = ResumePoint(path, state, meta, accepted)
    check_total_frames(int(run.get("total_frames")), point.frames, path)
    check_schedule_horizon(meta, run, overrides=overrides, path=path)
    if without_replay:
        warmup, total = int((run.get("algo") or {}).get("warmup_steps") or 0), int(run.get("total_frames"))
        if total <= point.frames + warmup:
            raise ConfigError(
                f"checkpoint.resume_without_replay=true starts a fresh random warm-up of algo.warmup_steps={warmup} "
                f"frames at the checkpoint's {point.frames} frames, and total_frames={total} ends within it: nothing "
                f"would be trained. Fix: total_frames > {point.frames + warmup}, or a shorter warm-up "
                "(algo.warmup_steps=<frames> resume_override=[algo.warmup_steps])"
            )
        state[FRESH_REPLAY] = True
        print(
            f"checkpoint.resume_without_replay=true: resuming the networks and counters of {path} with a fresh "
            f"replay buffer (random warm-up until {point.frames + warmup} frames, then training)"
        )
    note = version_note(meta)
    if note:
        print(note)
    return point


def resume_error(err: CheckpointError) -> CheckpointError:
    """A checkpoint error as a training run reports it, with its fix spelled in ``resume=``.

    For a failed sidecar it also names the option that resumes without it
    (``checkpoint.resume_without_replay=true``).

    Example:
        >>> err = CheckpointError("checkpoint run/checkpoint.pt verifies, but its replay sidecar "
        ...                       "checkpoint.replay.0123456789ab.pt is missing", sidecar="replay")
        >>> print(resume_error(err))  # doctest: +NORMALIZE_WHITESPACE
        checkpoint run/checkpoint.pt verifies, but its replay sidecar checkpoint.replay.0123456789ab.pt is missing.
        Fix: resume its networks and counters with a fresh replay buffer and a fresh warm-up:
        checkpoint.resume_without_replay=true
    """
    keyed = err.for_key("resume")
    if err.sidecar is None:
        return keyed
    option = (
        "resume its networks and counters with a fresh replay buffer and a fresh warm-up: "
        "checkpoint.resume_without_replay=true"
    )
    text = f"{keyed}, or {option}" if err.fix else f"{keyed}. Fix: {option}"
    return CheckpointError(text, use_instead=err.use_instead, sidecar=err.sidecar)


def check_family(meta: Mapping[str, Any], kind: str | None, path: Any = None) -> None:
    """Refuses to resume an on-policy checkpoint as an off-policy run, or the other way round.

    Their training states share nothing (a critic with GAE against a replay buffer and
    target networks), so no ``resume_override`` can make one continue as the other.

    Raises:
        ConfigError: the families differ, naming both and the fix.

    Example:
        >>> check_family({"kind": "on_policy", "algorithm": "happo"}, "off_policy", "run/checkpoint.pt")
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        harl_torchrl.errors.ConfigError: cannot resume run/checkpoint.pt (happo, an on-policy run) as an off-policy ...
    """
    saved = meta.get("kind")
    if kind is None or saved is None or saved == kind:
        return
    words = {"on_policy": "an on-policy", "off_policy": "an off-policy"}
    algorithm = meta.get("algorithm", "?")
    raise ConfigError(
        f"cannot resume {path} ({algorithm}, {words.get(saved, saved)} run) as {words.get(kind, kind)} algorithm: "
        f"their training states share nothing. Fix: resume with algo={algorithm}, or start a new run without resume="
    )


def version_note(meta: Mapping[str, Any]) -> str | None:
    """A one-line note when a checkpoint was written by another library or torch version, else ``None``.

    Example:
        >>> version_note({"library_version": "0.0.1", "torch_version": "1.0"})  # doctest: +ELLIPSIS
        'note: this checkpoint was written by harl_torchrl 0.0.1 with torch 1.0; this run uses ...'
    """
    from harl_torchrl import __version__

    saved = (str(meta.get("library_version", "?")), str(meta.get("torch_version", "?")))
    current = (__version__, str(torch.__version__))
    if saved == current:
        return None
    return (
        f"note: this checkpoint was written by harl_torchrl {saved[0]} with torch {saved[1]}; this run uses "
        f"harl_torchrl {current[0]} with torch {current[1]} (resuming; results may differ in the last digits)"
    )


def restore_run(
    point: ResumePoint,
    collector: Any,
    envs: Mapping[str, Any],
    load_training_state: Callable[[dict[str, Any]], Any],
) -> list[str]:
    """Restores a run from ``point`` once its envs, modules and collector are built.

    Writes back the envs' and the collector's state (unless an env setting was
    overridden: then the run starts fresh episodes), then the training state through
    ``load_training_state`` (which restores the global random states last).

    Returns:
        The parts restored exactly (``"train"``, ``"eval"``, ``"carrier"``).

    Raises:
        CheckpointError: the saved training state does not fit the modules built for this run.
    """
    restored = [] if point.env_changed else restore_rollout_state(collector, envs, point.state.get("rollout"))
    try:
        load_training_state(point.state)
    except (ValueError, RuntimeError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {point.path}: its training state does not fit the networks built for this run ({first}); "
            "resume with the checkpoint's algo/env/model config"
        ) from None
    return restored
