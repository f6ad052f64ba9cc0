"""Atomic file writes: a reader never sees a half-written output; no output overwrites an input.

Every output is written to a temporary sibling and moved into place with ``os.replace``, which is
atomic on POSIX file systems; a crash leaves at most a ``.tmp-*`` file that no rule treats as done.
A temporary's name holds its owner (``<pid>@<host>``): one whose owner no longer runs on this host is
removed by the next write beside it. ``check_writable`` tests an output location before any work
starts, so a read-only, full or mistyped destination fails in the first second, not after hours of
compute; ``check_output`` adds the rules on what an output may replace (see there). ``file_lock``
is the one inter-process lock of the package.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import re
import shutil
import socket
import stat
import sys
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


def _owner() -> str:
    """``<pid>@<host>``: who owns a temporary (the host reduced to characters safe in a file name)."""
    return f"{os.getpid()}@{re.sub(r'[^A-Za-z0-9-]', '-', socket.gethostname())}"


_OWNER = re.compile(r"\.(\d+)@([A-Za-z0-9-]+)\.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the ``.tmp-*`` and ``.old-*`` entries in ``folder`` (of ``name`` only, if given) whose owner
    process no longer runs on this host, left by a killed or crashed job; returns what was removed.
    Another host's temporaries are left alone: their owner's liveness cannot be seen from here."""
    folder = Path(folder)
    host = _owner().split("@", 1)[1]
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith((".tmp-", ".old-")):
            continue
        if name is not None and not entry.name[5:].startswith(f"{name}."):
            continue
        match = _OWNER.search(entry.name[5:])
        if match is None or match.group(2) != host or _alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(entry)
    return removed


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive lock across processes, held on the file ``path`` (created if missing), POSIX ``flock``;
    where that is unavailable, atomic writes alone keep outputs whole."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _temp_beside(path: Path, suffix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.{_owner()}.", suffix=suffix, dir=path.parent)
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
    remove_stale_temporaries(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}.{_owner()}.", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".old-{path.name}.{_owner()}.")
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
    """``torch.save`` atomically, with the same bytes for the same object: written through a file object,
    the archive's records are named ``archive/...`` (from a path torch would name them after the
    temporary file). A full disk or another OS error is a one-line ``WMoEError``."""
    import torch

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                torch.save(obj, fh)
    except (OSError, RuntimeError) as exc:
        # torch's zip writer reports a failed write as a RuntimeError, the OSError as its context.
        cause = exc
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            if "write" not in str(exc).lower() and "unexpected pos" not in str(exc):
                raise
            full = shutil.disk_usage(path.parent).free < (1 << 20)
            code = errno.ENOSPC if full else errno.EIO
            cause = OSError(code, os.strerror(code))
        raise WMoEError(os_error_message(OSError(cause.errno, cause.strerror, str(path)), f"writing {path}")) from None


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


def _json_doc(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _first_line(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readline(200)
    except OSError:
        return ""


def _is_checkpoint(path: Path) -> bool:
    with open(path, "rb") as fh:
        if fh.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
            return False
    try:
        payload = torch_load(path, "checkpoint", "")
    except WMoEError:
        return False
    return isinstance(payload, dict) and payload.get("format") == "wmoe-clip/checkpoint"


def _is_figure(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.format == "PNG" and str(img.info.get("Software", "")).startswith(FIGURE_SOFTWARE)
    except Exception:  # noqa: BLE001 - anything unreadable is not our figure
        return False


def _is_history(path: Path) -> bool:
    doc = _json_doc(path)
    return isinstance(doc, list) and all(isinstance(e, dict) and "epoch" in e and "loss" in e for e in doc)


# PNG figures carry this in their ``Software`` text chunk, which tells a rerun its own earlier figure.
FIGURE_SOFTWARE = "wmoe-clip"

# Each kind of output: what it is, and how an earlier one of that kind is recognised.
OUTPUT_KINDS: dict[str, tuple[str, Any]] = {
    "eval": ("evaluation JSON", lambda p: isinstance(d := _json_doc(p), dict) and d.get("format") == "wmoe-clip/eval"),
    "figure": ("figure of wmoe-clip evaluate", _is_figure),
    "checkpoint": ("wmoe-clip checkpoint", _is_checkpoint),
    "run": ("training record", lambda p: isinstance(d := _json_doc(p), dict)
            and {"source", "method", "config", "model"} <= d.keys()),
    "history": ("training history", _is_history),
    "run-config": ("resolved run config", lambda p: _first_line(p).startswith("# Resolved run config:")),
    "report-tex": ("report table", lambda p: _first_line(p).startswith("% Generated by `wmoe-clip report`")),
    # Pages written before the generator mark are known by their title.
    "report-html": ("report page", lambda p: any(mark in p.read_text(encoding="utf-8", errors="replace")[:2000] for mark
                                                 in ('<meta name="generator" content="wmoe-clip report">',
                                                     "<title>WMoE-CLIP reproduction"))),
    "scores-json": ("predict scores", lambda p: isinstance(d := _json_doc(p), dict) and {"checkpoint", "images"} <= d.keys()),
    "scores-csv": ("predict scores", lambda p: _first_line(p).startswith("path,status,")),
    "meta": ("prepared manifest", lambda p: isinstance(d := _json_doc(p), dict) and {"root", "dataset", "test"} <= d.keys()),
    "prepare-report": ("prepare report", lambda p: isinstance(d := _json_doc(p), dict) and {"dataset", "counts"} <= d.keys()),
}


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _special_kind(mode: int) -> str | None:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return None


def check_output(path: str | os.PathLike, what: str, kind: str, *, inputs: Any = (), force: bool = False,
                 earlier: bool = False) -> bool:
    """Raise ``WMoEError`` unless the output file ``path`` may be written, before any work starts;
    returns whether an existing file will be replaced.

    The rules: an output never replaces one of the command's ``inputs`` (the same file, by
    ``os.path.samefile``) nor, inside an input folder, a file that is not its own earlier output,
    whatever ``force`` says; it never replaces what is not a regular file (a symbolic link, a device,
    a pipe, a folder); it replaces an existing file silently only when that file is recognisably an
    earlier output of the same ``kind`` (a rerun, see ``OUTPUT_KINDS``), anything else only with
    ``force``, and then says so on stderr. ``earlier``: the caller knows the file to be an earlier
    output of its kind by other means.
    Then :func:`check_writable` tests the location.
    """
    path = Path(path)
    description, recognise = OUTPUT_KINDS[kind]
    try:
        st = os.lstat(path)
    except OSError:  # missing, or below a file: check_writable names the problem
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise WMoEError(f"{what} {path} is a symbolic link (to {os.readlink(path)}); outputs replace only regular "
                            "files: give the path of a new or regular file")
        special = _special_kind(st.st_mode)
        if special:
            raise WMoEError(f"{what} {path} is {special}; outputs replace only regular files: give another path")
        given = [Path(g) for g in inputs if g is not None]
        for source in given:
            if _same_file(path, source):
                raise WMoEError(f"{what} {path} is an input of this command ({source}); writing it would destroy "
                                "the input: give another path")
        if not (earlier or recognise(path)):
            for folder in given:
                if folder.is_dir() and _is_within(path, folder):
                    raise WMoEError(f"{what} {path} is a file of the input folder {folder}; writing it would destroy "
                                    "it: give another path")
            if not force:
                raise WMoEError(f"{what} {path} exists and is not a {description} wmoe-clip wrote; give another "
                                "path, or pass --force to replace it")
            print(f"wmoe-clip: replacing {path} (--force): it was not a {description}", file=sys.stderr)
    check_writable(path, what)
    return st is not None
