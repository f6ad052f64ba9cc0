"""Atomic file writes: a reader never sees a half-written output.

Every output is written to a temporary sibling and moved into place with ``os.replace``, which is
atomic on POSIX file systems; a crash leaves at most a ``.tmp-*`` file that no rule treats as done.
``check_writable`` tests an output location before any work starts, so a read-only, full or
mistyped destination fails in the first second, not after hours of compute.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import WMoEError, os_error_message

# torch.save writes a zip archive; anything else handed over as a checkpoint is the wrong file.
_ZIP_MAGIC = b"PK\x03\x04"
_PROBE_BYTES = 4096


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: Path, suffix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; outputs get the usual permissions (shared clusters, DVC caches).
    tmp_path.chmod(0o666 & ~_umask())
    return tmp_path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    tmp_path = _temp_beside(path, suffix)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path`` that replaces ``path`` as a whole on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}.", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".old-{path.name}.{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any, indent: int = 2) -> str:
    return json.dumps(obj, indent=indent, sort_keys=False, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    write_text(path, json_text(obj, indent))


def write_files(items: list[tuple[str | os.PathLike, bytes]]) -> None:
    """Write files that belong together: all are written to temporary siblings first, then moved into
    place in the given order (put the one that marks completion last). A failure before the moves
    leaves every previous file as it was."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in items:
            path = Path(path)
            tmp = _temp_beside(path)
            staged.append((tmp, path))
            tmp.write_bytes(data)
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a result may hold")


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file, refusing NaN and ±Infinity (Python's json module accepts them silently)."""
    return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_refuse_constant)


def check_writable(path: str | os.PathLike, what: str, *, folder: bool = False, replaced: bool = False) -> None:
    """Raise ``WMoEError`` unless the output ``path`` can be written, before any work starts.

    ``folder``: ``path`` is a folder (else a file). Files, and folders with ``replaced`` (swapped in
    as a whole by :func:`atomic_dir`), are created beside themselves, so their parent must take new
    entries; other folders are filled in place. Missing folders are not created here: the nearest
    existing one is tested. The test writes and removes a small file, which catches permissions, a
    read-only file system and a full disk alike.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = "a folder" if path.is_dir() else "a file"
        raise WMoEError(f"{what} {path} is {kind}; give the path of a {'folder' if folder else 'file'}")
    place = path if folder and not replaced else path.parent
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        raise WMoEError(f"{what} {path} cannot be created: {place} is a file, not a folder; check the path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".wmoe-clip-write-test.", dir=place)
        try:
            os.write(fd, b"\0" * _PROBE_BYTES)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise WMoEError(os_error_message(OSError(exc.errno, exc.strerror, str(place)),
                                         f"{what} {path} is not writable")) from None


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def torch_load(path: str | os.PathLike, what: str, advice: str, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` of a file this project wrote; a wrong, truncated or corrupt
    file is a one-line ``WMoEError`` naming it, ``what`` it should be and the ``advice``."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(len(_ZIP_MAGIC))
    if head != _ZIP_MAGIC:
        raise WMoEError(f"{path} is not a {what}: it is not a file written by torch.save "
                        f"(it starts with {head!r}); {advice}")
    try:
        return load_plain_tensors(path, map_location)
    except pickle.UnpicklingError as exc:
        raise WMoEError(f"{path} is refused as a {what}: it holds objects that are not plain tensors "
                        f"({load_failure(exc)}); nothing in it was run; {advice}") from None
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a damaged file
        raise WMoEError(f"{what} {path} is truncated or corrupt ({load_failure(exc)}); {advice}") from None


def load_plain_tensors(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with torch's warnings silenced (a legacy or TorchScript file
    makes torch warn before it fails; the caller's one-line error is what the user should read)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location=map_location, weights_only=True)


# Sentences of torch's load errors that advise loading with weights_only=False (which would run
# whatever code the file holds) or allowing more globals: never shown to a user.
_TORCH_ADVICE = re.compile(r"Weights only load failed|still be loaded|two options|trust|Alternatively"
                           r"|In PyTorch 2\.6|Re-running|weights_only`? set to|weights_only=False|arbitrary code"
                           r"|Check the documentation|Please|safe_globals|file an issue", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def load_failure(exc: BaseException) -> str:
    """Why ``torch.load`` failed, in one line: its type and torch's reason, without torch's advice."""
    text = _ANSI.sub("", str(exc))
    sentences = [s.strip() for line in text.splitlines() for s in re.split(r"(?<=\.)\s+", line)]
    reason = " ".join(s for s in sentences if s and not _TORCH_ADVICE.search(s))
    reason = reason.replace("WeightsUnpickler error: ", "").rstrip(".")
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
