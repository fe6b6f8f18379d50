"""Self-describing, verified, atomically written checkpoint files.

A checkpoint file is one :func:`torch.save` archive holding a plain dict::

    {
        "harl_torchrl_checkpoint": FORMAT_VERSION,   # marks our files, and their layout
        "meta": {...},          # format/library/torch versions, algorithm, algo/env/model config, counters
        "sidecars": {name: {"file": "checkpoint.replay.<sha12>.pt", "sha256": "..."}},
        "sha256": "...",        # digest of meta + sidecars + state (see below)
        "state": {...},         # what the loop saved: tensors, numbers, strings in dicts/lists
    }

The digest is SHA-256 over a canonical walk of ``meta``, ``sidecars`` and ``state``: each
leaf contributes its position, type and value, and each tensor its dtype, shape and raw
bytes, hashed in place (a memory view of the tensor, no copy). So a flipped bit in any
tensor, number or key is caught after loading, and a flipped bit in the archive's own
structure fails the load itself: both give a :class:`CheckpointError` naming the file.

Large extra payloads (an off-policy replay buffer of hundreds of MB) go to *sidecar* files
written the same way, ``<stem>.<name>.<sha12>.pt``, whose digest the main file records:
:func:`torch.save` streams their tensors to disk and the digest reads them in place, so
saving holds no extra copy of the buffer, and the main file stays small enough to be
read for its metadata alone (``sidecars=False``). Sidecar names carry their digest, so the
main file and the previous one each keep their own sidecar; unreferenced ones are removed.

Saving is atomic: every file is written to a temporary file next to its destination,
flushed and fsynced, moved into place with :func:`os.replace`, and the directory is
fsynced so the rename itself survives a power cut. The previous checkpoint is kept as
``<stem>.prev.pt`` (a hard link of the old file, made before the new one replaces it),
so there is always one complete checkpoint on disk, and a run stopped by the NaN guard
still has the last good one. Temporary files left by a save that was killed
(``.<name>.*.tmp``, sidecars' included) are removed by the next save, and so is every
sidecar that neither the new checkpoint nor the previous one references. A save that
fails (a full disk, a signal) removes what it wrote and replaces nothing; a full disk
(or quota) is a :class:`CheckpointError` naming the directory, the space needed and the
checkpoint left intact.

Loading always uses ``torch.load(weights_only=True)``: no code in the file ever runs
(a pickle whose ``__reduce__`` calls ``os.system`` is refused, not executed).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from harl_torchrl.config import config_to_dict
from harl_torchrl.errors import ConfigError

#: Layout version of the files :func:`save_checkpoint` writes. Bump it when the layout changes.
FORMAT_VERSION = 2
_MARKER = "harl_torchrl_checkpoint"
_TOP_KEYS = {_MARKER, "meta", "sidecars", "sha256", "state"}


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used: the message names the file, what is wrong and what to do.

    Subclasses :class:`~harl_torchrl.errors.ConfigError`, so recipes report it as one line
    before training starts. The message names no command-line key: :func:`load_checkpoint`
    does not know whether it was called for ``resume=`` (training) or ``checkpoint=``
    (``harl-evaluate``), so a caller that has a key adds the fix in it with :meth:`for_key`.

    Args:
        message: the whole message, without a command-line key.
        fix: the fix in a caller's key, ``{key}`` standing for it (``": {key}=run/checkpoint.prev.pt"``).
        use_instead: the file to pass instead, when there is one that verified (the
            previous checkpoint, or the checkpoint a sidecar file belongs to).
        sidecar: the name of the sidecar that failed (``"replay"``), when it was a sidecar.

    Example:
        >>> err = CheckpointError("checkpoint run/checkpoint.pt: no such file", fix=" (check the {key}= path)")
        >>> print(err)
        checkpoint run/checkpoint.pt: no such file
        >>> print(err.for_key("checkpoint"))
        checkpoint run/checkpoint.pt: no such file (check the checkpoint= path)
    """

    def __init__(
        self, message: str, *, fix: str = "", use_instead: Path | None = None, sidecar: str | None = None
    ) -> None:
        super().__init__(message)
        self.fix = fix
        self.use_instead = use_instead
        self.sidecar = sidecar

    def for_key(self, key: str) -> CheckpointError:
        """This error with its fix spelled in the caller's command-line key (``resume``, ``checkpoint``)."""
        return CheckpointError(
            f"{self}{self.fix.replace('{key}', key)}", use_instead=self.use_instead, sidecar=self.sidecar
        )


# ---------------------------------------------------------------- metadata
def run_metadata(cfg: Any, *, frames: int, iteration: int) -> dict[str, Any]:
    """What a checkpoint says about itself: versions, algorithm, the run's algo/env/model config, counters.

    Args:
        cfg: the run's config (a :class:`~harl_torchrl.config.RunConfig`, or anything
            :func:`~harl_torchrl.config.config_to_dict` takes: a ``DictConfig``, a plain dict).
        frames: frames collected so far.
        iteration: iterations completed so far.

    Returns:
        ``{"format_version", "library_version", "torch_version", "kind", "algorithm",
        "config": {"algo", "env", "model"}, "frames", "iteration", "total_frames"}``, plain
        containers only; ``total_frames`` (the run's budget, which a linear learning-rate
        decay is scheduled over) is ``None`` when ``cfg`` has none.

    Example:
        >>> meta = run_metadata({"algo": {"name": "happo"}, "env": {}, "model": {}}, frames=80, iteration=1)
        >>> meta["algorithm"], meta["frames"], sorted(meta["config"])
        ('happo', 80, ['algo', 'env', 'model'])
    """
    from harl_torchrl import __version__

    tree = config_to_dict(cfg)
    groups = {group: tree.get(group, {}) for group in ("algo", "env", "model")}
    total_frames = tree.get("total_frames")
    return {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "torch_version": str(torch.__version__),
        "kind": str(getattr(getattr(cfg, "algo", None), "kind", "on_policy")),  # the algorithm family
        "algorithm": str((groups["algo"] or {}).get("name", "")),
        "config": groups,
        "frames": int(frames),
        "iteration": int(iteration),
        "total_frames": None if total_frames is None else int(total_frames),
    }


def _base_metadata() -> dict[str, Any]:
    from harl_torchrl import __version__

    return {"format_version": FORMAT_VERSION, "library_version": __version__, "torch_version": str(torch.__version__)}


# ------------------------------------------------------------------ digest
def _leaves(obj: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every leaf of ``obj`` with its path, containers in a canonical order (dict keys sorted)."""
    if isinstance(obj, Mapping):
        yield path, ("dict", len(obj))
        for key in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
            yield from _leaves(obj[key], (*path, key))
    elif isinstance(obj, (list, tuple)):
        yield path, (type(obj).__name__ if not isinstance(obj, torch.Size) else "tuple", len(obj))
        for index, value in enumerate(obj):
            yield from _leaves(value, (*path, index))
    else:
        yield path, obj


def _flat_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a dense tensor as a flat ``uint8`` tensor, read in place where its layout allows.

    Any layout is accepted: a non-contiguous view, an expanded one, and a one-element view
    whose stride is above 1 (``torch.zeros(6)[::3][:1]``, which ``.contiguous()`` leaves as
    it is because a size-1 dimension counts as contiguous whatever its stride) are copied
    into a fresh contiguous tensor first; conjugate and negative views are resolved.

    Example:
        >>> _flat_bytes(torch.zeros(6)[::3][:1]).tolist()
        [0, 0, 0, 0]
    """
    tensor = tensor.cpu().resolve_conj().resolve_neg().reshape(-1)
    if tensor.stride(-1) != 1:  # non-contiguous, or a size-1 view with any stride
        tensor = tensor.clone(memory_format=torch.contiguous_format)
    return tensor.view(torch.uint8)


def _digest(*parts: Any) -> str:
    """SHA-256 over a canonical walk of ``parts`` (tensor bytes read in place)."""
    sha = hashlib.sha256()
    for part in parts:
        for path, leaf in _leaves(part):
            sha.update(repr(path).encode())
            if isinstance(leaf, torch.Tensor):
                tensor = leaf.detach()
                if tensor.layout != torch.strided:
                    raise TypeError(f"checkpoint entry {'/'.join(map(str, path))}: only dense tensors can be saved")
                sha.update(f"tensor:{tensor.dtype}:{tuple(leaf.shape)}:".encode())
                if tensor.numel():
                    sha.update(memoryview(_flat_bytes(tensor).numpy()))
            elif type(leaf) is float:
                sha.update(b"float:" + struct.pack("<d", leaf))
            elif isinstance(leaf, (torch.device, torch.dtype)):  # e.g. in TensorDict/replay-buffer state dicts
                sha.update(f"{type(leaf).__name__}:{leaf}".encode())
            elif leaf is None or type(leaf) in (bool, int, str, bytes, tuple):
                # tuples here are the ("dict", n) / ("list", n) container markers
                sha.update(f"{type(leaf).__name__}:{leaf!r}".encode())
            else:
                raise TypeError(
                    f"checkpoint entry {'/'.join(map(str, path)) or '<root>'} is a {type(leaf).__name__}: "
                    "only tensors, numbers, strings and None in dicts/lists/tuples can be saved"
                )
    return sha.hexdigest()


# ------------------------------------------------------------------ saving
def previous_checkpoint(path: str | os.PathLike) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint it replaced: ``<stem>.prev<suffix>``.

    Example:
        >>> previous_checkpoint("run/checkpoint.pt").as_posix()
        'run/checkpoint.prev.pt'
    """
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":  # pragma: no cover - directories cannot be opened for fsync on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_temps(path: Path) -> None:
    """Removes the temporary files that killed saves of ``path`` left, sidecars' included.

    ``.checkpoint.pt.<random>.tmp``, ``.checkpoint.prev.pt.<random>.tmp`` and
    ``.checkpoint.<name>.<sha12>.pt.<random>.tmp``: a save killed while writing a sidecar
    leaves a temp named after that sidecar's digest, which the next save (writing another
    sidecar) would never match by its own name. One run owns a run dir
    (:class:`~harl_torchrl.run.lock.RunDirLock`) and saves one file at a time, so every
    such file found when a save starts was left by a save that died.
    """
    for pattern in (f".{path.name}.*.tmp", f".{path.stem}.*{path.suffix}.*.tmp"):
        for stale in path.parent.glob(pattern):
            stale.unlink(missing_ok=True)


def _write_temp(path: Path, obj: Any) -> Path:
    """torch.save to a temp file next to ``path``, flushed and fsynced; removed again if that fails."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _keep_as_previous(path: Path) -> None:
    """Makes ``<stem>.prev.pt`` the current ``path`` (a hard link, else a copy), atomically."""
    if not path.is_file():
        return
    prev = previous_checkpoint(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{prev.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(path, tmp)
        except OSError:  # file systems without hard links: copy
            shutil.copyfile(path, tmp)
        os.replace(tmp, prev)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    path: str | os.PathLike,
    state: dict[str, Any],
    *,
    metadata: Mapping[str, Any] | None = None,
    sidecars: Mapping[str, dict[str, Any]] | None = None,
    keep_previous: bool = True,
) -> Path:
    """Writes ``state`` (and its sidecars) to ``path`` atomically, with metadata and a checksum.

    Files are replaced only once the new ones are complete on disk: sidecars first (new
    names, so nothing is overwritten), then the main file to a temp file, and only then
    the current file becomes ``<stem>.prev.pt`` and the temp file the current one. A save
    that fails (a full disk, a signal) removes what it wrote and leaves the checkpoint
    and sidecars already there as they were.

    Args:
        path: destination file, e.g. ``<run dir>/checkpoint.pt``.
        state: nested dicts/lists/tuples of tensors, numbers, strings, None, ``torch.device``
            and ``torch.dtype`` (what ``torch.load(weights_only=True)`` accepts; exact types, so
            an enum or numpy scalar is refused); anything else raises ``TypeError`` before a
            file is touched. Tensors of any layout (views, strides, offsets) are accepted.
        metadata: what the checkpoint says about itself (see :func:`run_metadata`);
            versions are filled in when missing.
        sidecars: large payloads written to their own files (``{"replay": {...}}`` goes to
            ``<stem>.replay.<sha12>.pt``), verified on load; names must not be keys of ``state``.
        keep_previous: keep the replaced checkpoint as ``<stem>.prev.pt``.

    Returns:
        The path written.

    Raises:
        CheckpointError: the disk is full (or the quota spent): one line naming the
            directory, the space free and needed, and the checkpoint left intact.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "ckpt.pt"
        >>> _ = save_checkpoint(target, {"step": 3, "w": torch.ones(2)}, metadata={"algorithm": "happo"})
        >>> _ = save_checkpoint(target, {"step": 4, "w": torch.ones(2)}, metadata={"algorithm": "happo"})
        >>> load_checkpoint(target)["step"], load_checkpoint(previous_checkpoint(target))["step"]
        (4, 3)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**_base_metadata(), **dict(metadata or {})}
    sidecars = dict(sidecars or {})
    clash = set(sidecars) & set(state)
    if clash:
        raise ValueError(f"sidecar names {sorted(clash)} are also keys of the checkpoint state")
    references = {}
    for name, payload in sidecars.items():
        digest = _digest(payload)
        references[name] = {"file": f"{path.stem}.{name}.{digest[:12]}{path.suffix}", "sha256": digest}
    digest = _digest(meta, references, state)
    record = {_MARKER: FORMAT_VERSION, "meta": meta, "sidecars": references, "sha256": digest, "state": state}
    _remove_stale_temps(path)
    written: list[Path] = []  # sidecar files this save created (nothing else references them yet)
    try:
        for name, payload in sidecars.items():
            file = path.parent / references[name]["file"]
            if file.is_file():  # same content already on disk: nothing to write
                continue
            sidecar = {_MARKER: FORMAT_VERSION, "sidecar": name, "sha256": references[name]["sha256"], "state": payload}
            tmp = _write_temp(file, sidecar)
            written.append(file)
            os.replace(tmp, file)
        tmp = _write_temp(path, record)
        try:
            if keep_previous:
                _keep_as_previous(path)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except BaseException as err:
        for file in written:
            file.unlink(missing_ok=True)
        full = _space_error(err)
        if full is None:
            raise
        fresh = [name for name in sidecars if not (path.parent / references[name]["file"]).is_file()]
        needed = _saved_bytes(record) + sum(_saved_bytes(sidecars[name]) for name in fresh)
        raise CheckpointError(_disk_full_message(path, full, needed)) from None
    _fsync_dir(path.parent)
    _remove_unreferenced_sidecars(path, {ref["file"] for ref in references.values()})
    return path


def _space_error(err: BaseException) -> OSError | None:
    """The ``ENOSPC`` / ``EDQUOT`` error behind ``err`` (torch.save wraps it in a RuntimeError), if any."""
    pending, seen = [err], set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_SPACE:
            return current
        pending += [current.__cause__, current.__context__]
    return None


_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _saved_bytes(obj: Any) -> int:
    """About the bytes :func:`torch.save` writes for ``obj``.

    Each tensor storage once and whole, plus about 500 bytes per tensor for its pickle
    record and zip entry (measured: an MPE off-policy checkpoint of 364 tensors, 235 kB, is
    estimated at 259 kB; its replay sidecar, 296 kB, at 304 kB).
    """
    storages: dict[int, int] = {}
    tensors = 0
    for _, leaf in _leaves(obj):
        if isinstance(leaf, torch.Tensor):
            tensors += 1
            storage = leaf.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values()) + 500 * tensors


def _size(count: float) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units, as ``df -H``)."""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1000
    return f"{count:,.1f} GB"  # pragma: no cover - the loop returns


def _disk_full_message(path: Path, err: OSError, needed: int) -> str:
    """One line: where, how much is needed and free, and which checkpoint is still intact."""
    reason = "no space left on the device" if err.errno == errno.ENOSPC else "the disk quota is exhausted"
    try:
        free = f"{_size(shutil.disk_usage(path.parent).free)} free"
    except OSError:
        free = "free space unknown"
    where = f"cannot write checkpoint {path}: {reason} of {path.parent} ({free}, this save needs about {_size(needed)})"
    try:
        meta = read_metadata(path)
    except CheckpointError:
        if path.exists():
            return f"{where}; {path} was not replaced, but it does not verify. Fix: free space in {path.parent}"
        return f"{where}; no checkpoint had been written yet. Fix: free space in {path.parent} and start again"
    sidecars = sorted(_sidecar_files(path))
    missing = [name for name in sidecars if not (path.parent / name).is_file()]
    if missing:
        intact = f"is intact, but its sidecar {', '.join(missing)} is missing"
    else:
        intact = f"and its sidecar {', '.join(sidecars)} are intact" if sidecars else "is intact"
    counters = f"iteration {meta.get('iteration', '?')}, {meta.get('frames', '?')} frames"
    return (
        f"{where}; nothing was replaced: the previous checkpoint {path} ({counters}) {intact}. "
        f"Fix: free space in {path.parent}, then resume from it"
    )


# Sidecar references of checkpoint files this process wrote, by file identity: the cleanup after
# a save needs the previous checkpoint's references, and unpickling a whole checkpoint (env state
# included, about 0.4 s for MPE) to get them would be done on every save.
_REFERENCES: dict[tuple[int, int, int, int], set[str]] = {}


def _file_identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _sidecar_files(path: Path) -> set[str]:
    """The sidecar files ``path`` references (empty if it is missing or unreadable)."""
    identity = _file_identity(path)
    if identity is None:
        return set()
    if identity not in _REFERENCES:
        try:
            record = _read_record(path, hints=False)
        except CheckpointError:
            return set()
        _REFERENCES[identity] = {ref["file"] for ref in record["sidecars"].values()}
    return _REFERENCES[identity]


def _is_sidecar_of(path: Path, name: str) -> bool:
    """Whether ``name`` is a sidecar file name of checkpoint ``path``: ``<stem>.<name>.<sha12><suffix>``."""
    pattern = rf"{re.escape(path.stem)}\.[^.]+\.[0-9a-f]{{12}}{re.escape(path.suffix)}"
    return re.fullmatch(pattern, name) is not None


def _remove_unreferenced_sidecars(path: Path, written: set[str]) -> None:
    """Removes every sidecar of ``path`` that neither it nor ``<stem>.prev.pt`` references.

    Whatever sidecar the next save writes (another name, or none with
    ``checkpoint.replay_buffer=false``), the ones an interrupted save or an older
    checkpoint left go: only the current and the previous checkpoint's stay.
    """
    identity = _file_identity(path)
    if identity is not None:
        _REFERENCES[identity] = set(written)
        while len(_REFERENCES) > 16:  # only the latest two matter
            _REFERENCES.pop(next(iter(_REFERENCES)))
    candidates = [entry for entry in path.parent.iterdir() if _is_sidecar_of(path, entry.name)]
    if not candidates:  # on-policy runs: no sidecar, nothing to read
        return
    keep = _sidecar_files(path) | _sidecar_files(previous_checkpoint(path))
    for candidate in candidates:
        if candidate.name not in keep:
            candidate.unlink(missing_ok=True)


# ----------------------------------------------------------------- loading
class _Unusable(Exception):
    """What is wrong with one file, without its path or a hint: the callers phrase the message."""

    def __init__(self, problem: str, *, missing: bool = False) -> None:
        super().__init__(problem)
        self.missing = missing


def _read_archive(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Loads ``path`` with ``weights_only=True`` and checks our marker and version; raises :class:`_Unusable`."""
    if not path.exists():
        raise _Unusable("no such file", missing=True)
    if not path.is_file():
        raise _Unusable("not a file (a directory?)", missing=True)
    if path.stat().st_size == 0:
        raise _Unusable("the file is empty (a save that never completed?)")
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt archives raise RuntimeError, pickle.UnpicklingError, EOFError, ...
        text = str(err).strip()
        lines = [line.strip() for line in text.splitlines() if line.strip()] or [type(err).__name__]
        if "Unsupported global" in text or "GLOBAL " in text:
            culprit = next((line for line in lines if "GLOBAL" in line), lines[-1])
            problem = f"refused: it holds objects that are not plain data and would run code on load ({culprit[:200]})"
        else:
            detail = next((line for line in lines if "Unsupported operand" in line), lines[0])
            detail = detail.split(". ")[0].rstrip(".")  # the first sentence says it (miniz adds advice)
            problem = f"unreadable (truncated, damaged or not a torch checkpoint: {detail[:200]})"
        raise _Unusable(problem) from None
    if not isinstance(record, dict) or _MARKER not in record:
        raise _Unusable(
            "not a harl_torchrl checkpoint of format >= 2 (no format marker: an older checkpoint or another "
            "program's file); this version cannot verify it"
        )
    version = record[_MARKER]
    if version != FORMAT_VERSION:
        raise _Unusable(f"format version {version!r}, this library reads version {FORMAT_VERSION}")
    return record


def _verifies(path: Path) -> bool:
    """Whether ``path`` loads and verifies, sidecars included (no hints, so no further checkpoint is read)."""
    try:
        _load(path, "cpu", sidecars=True, hints=False)
    except CheckpointError:
        return False
    return True


def _previous(path: Path, hints: bool) -> tuple[str, str, Path | None]:
    """``(text, fix, file)`` about ``<stem>.prev.pt`` for a message on ``path``: intact (verified) or not."""
    prev = previous_checkpoint(path)
    if not hints:
        return "", "", None
    if prev == path or not prev.is_file():
        return "; use another checkpoint or start a new run", "", None
    if not _verifies(prev):
        return f"; the previous checkpoint {prev} does not verify either: use another one or start a new run", "", None
    with_sidecars = " (and its sidecar)" if _sidecar_files(prev) else ""
    return f"; the previous checkpoint {prev}{with_sidecars} is intact", f": {{key}}={prev}", prev


def _fail(path: Path, problem: str, hints: bool = True) -> CheckpointError:
    text, fix, prev = _previous(path, hints)
    return CheckpointError(f"checkpoint {path}: {problem}{text}", fix=fix, use_instead=prev)


def _unusable(path: Path, err: _Unusable, hints: bool) -> CheckpointError:
    if err.missing:
        return CheckpointError(f"checkpoint {path}: {err}", fix=" (check the {key}= path: the checkpoint.pt file)")
    return _fail(path, str(err), hints)


def _read_record(path: Path, map_location: str | torch.device = "cpu", *, hints: bool = True) -> dict[str, Any]:
    """Loads ``path`` with ``weights_only=True`` and checks our layout (not yet the digest)."""
    try:
        return _read_archive(path, map_location)
    except _Unusable as err:
        raise _unusable(path, err, hints) from None


def _sidecar_of(path: Path, record: Mapping[str, Any]) -> CheckpointError:
    """The error for a sidecar file given where its checkpoint belongs, naming that checkpoint."""
    name = str(record.get("sidecar"))
    match = re.fullmatch(rf"(?P<stem>.+)\.{re.escape(name)}\.[0-9a-f]{{12}}(?P<suffix>\.[^.]+)", path.name)
    owner = path.parent / (f"{match['stem']}{match['suffix']}" if match else "checkpoint.pt")
    prev = previous_checkpoint(owner)
    if path.name not in _sidecar_files(owner) and path.name in _sidecar_files(prev):
        owner = prev
    return CheckpointError(
        f"{path} is the {name!r} sidecar of a checkpoint, not a checkpoint: the checkpoint is {owner}, which loads it",
        fix=f"; pass {{key}}={owner}",
        use_instead=owner,
    )


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    *,
    sidecars: bool = True,
    return_metadata: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], dict[str, Any]]:
    """Loads and verifies a checkpoint written by :func:`save_checkpoint`.

    ``torch.load(weights_only=True)`` is the only loader: no code in the file runs.
    The layout, the format version and the SHA-256 digest are checked; sidecars are
    loaded, verified and put into the returned state under their names.

    Args:
        path: the checkpoint file.
        map_location: where tensors are loaded.
        sidecars: also load the sidecar files (``False``: only the main file, e.g. to
            read the metadata of a checkpoint with a large replay buffer).
        return_metadata: return ``(state, metadata)`` instead of ``state``.

    Raises:
        CheckpointError: the file is missing, empty, truncated, garbage, of another
            format, fails its checksum, holds objects that would run code, or is a
            sidecar file; or a sidecar is missing or damaged (``err.sidecar`` names it).
            The message says whether ``<stem>.prev.pt`` verifies (it is then
            ``err.use_instead``); it names no command-line key (see
            :meth:`CheckpointError.for_key`).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "ckpt.pt"
        >>> _ = save_checkpoint(target, {"w": torch.zeros(1)}, sidecars={"replay": {"obs": torch.ones(3)}})
        >>> state, meta = load_checkpoint(target, return_metadata=True)
        >>> state["replay"]["obs"].tolist(), meta["format_version"] == FORMAT_VERSION
        ([1.0, 1.0, 1.0], True)
        >>> _ = target.write_bytes(b"garbage")
        >>> load_checkpoint(target)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        harl_torchrl.utils.checkpoint.CheckpointError: checkpoint ...: unreadable ...
    """
    return _load(Path(path), map_location, sidecars=sidecars, return_metadata=return_metadata)


def _load(
    path: Path,
    map_location: str | torch.device,
    *,
    sidecars: bool,
    return_metadata: bool = False,
    hints: bool = True,
) -> dict[str, Any] | tuple[dict[str, Any], dict[str, Any]]:
    record = _read_record(path, map_location, hints=hints)
    if "sidecar" in record and "meta" not in record:
        raise _sidecar_of(path, record)
    if set(record) != _TOP_KEYS or not isinstance(record["state"], dict) or not isinstance(record["meta"], dict):
        raise _fail(
            path, f"wrong structure: top-level keys {sorted(map(str, record))}, expected {sorted(_TOP_KEYS)}", hints
        )
    try:
        digest = _digest(record["meta"], record["sidecars"], record["state"])
    except TypeError as err:
        raise _fail(path, f"wrong structure: {err}", hints) from None
    if digest != record["sha256"]:
        raise _fail(path, "checksum mismatch: the file was changed or damaged after it was written", hints)
    state = record["state"]
    if sidecars:
        for name, ref in record["sidecars"].items():
            state[name] = _load_sidecar(path, name, ref, map_location, hints)
    return (state, record["meta"]) if return_metadata else state


def _load_sidecar(main: Path, name: str, ref: Mapping[str, Any], map_location: str | torch.device, hints: bool) -> Any:
    file = main.parent / str(ref["file"])
    try:
        record = _read_archive(file, map_location)
        if record.get("sidecar") != name or record.get("sha256") != ref["sha256"]:
            raise _Unusable("belongs to another checkpoint")
        if _digest(record["state"]) != ref["sha256"]:
            raise _Unusable("checksum mismatch: it was changed or damaged after it was written")
    except _Unusable as err:
        problem = "is missing" if err.missing else f"is damaged: {err}"
        text, fix, prev = _previous(main, hints)
        raise CheckpointError(
            f"checkpoint {main} verifies, but its {name} sidecar {file.name} {problem}{text}",
            fix=fix,
            use_instead=prev,
            sidecar=name,
        ) from None
    return record["state"]


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The verified metadata of a checkpoint (its sidecars are not read).

    Raises:
        CheckpointError: as :func:`load_checkpoint`.
    """
    return load_checkpoint(path, sidecars=False, return_metadata=True)[1]
