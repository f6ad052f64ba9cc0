"""Safe extraction of zip and tar archives.

Every entry is checked before anything is written: absolute names, drive letters, ``..``
components, links whose target leaves the destination, and special files (devices, FIFOs) are
refused, naming the archive and the entry. Writing then re-checks real paths (no-follow writes
below a resolved parent, the same code for zip and tar, independent of the Python version's tar
filters), so a link planted by an earlier entry cannot redirect a later one. ``extract_archive`` extracts into a temporary directory
beside the destination and moves it into place only when the whole archive succeeded.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, NamedTuple

from ..errors import WMoEError
from ..io import atomic_dir

_DRIVE = re.compile(r"^[A-Za-z]:")


def is_archive(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_file() and (zipfile.is_zipfile(path) or tarfile.is_tarfile(path))


def _refuse(archive: Path, name: str, why: str) -> WMoEError:
    return WMoEError(
        f"refusing to extract {archive}: entry {name!r} {why}. The archive is corrupt or malicious; "
        "nothing was extracted. Delete it and download it again from the dataset's source."
    )


def _check_name(archive: Path, name: str) -> str:
    """The entry's normalised relative path, or an error for one that could leave the destination."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        raise _refuse(archive, name, "has an absolute path")
    if ".." in norm.split("/"):
        raise _refuse(archive, name, "contains '..'")
    norm = posixpath.normpath(norm)
    if norm in ("", "."):
        return ""
    return norm


def _check_link(archive: Path, name: str, target: str, relative_to_root: bool) -> None:
    """A link target must stay inside the destination (symlinks resolve from their own folder)."""
    norm = target.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        raise _refuse(archive, name, f"links to the absolute path {target!r}")
    base = "" if relative_to_root else posixpath.dirname(name)
    resolved = posixpath.normpath(posixpath.join(base, norm))
    if resolved == ".." or resolved.startswith("../"):
        raise _refuse(archive, name, f"links outside the destination ({target!r})")


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _inside(root: Path, path: Path) -> bool:
    return path == root or root in path.parents


class _Entry(NamedTuple):
    name: str  # the archive's own spelling, for messages
    kind: str  # "dir", "file", "symlink" or "hardlink"
    link: str  # link target ("" unless a link)
    open: Callable[[], IO[bytes]] | None  # file content


def _zip_entries(zf: zipfile.ZipFile) -> list[_Entry]:
    entries = []
    for info in zf.infolist():
        if info.is_dir():
            entries.append(_Entry(info.filename, "dir", "", None))
        elif _zip_is_symlink(info):
            entries.append(_Entry(info.filename, "symlink", zf.read(info).decode("utf-8"), None))
        else:
            entries.append(_Entry(info.filename, "file", "", lambda info=info: zf.open(info)))
    return entries


def _tar_entries(archive: Path, tf: tarfile.TarFile) -> list[_Entry]:
    entries = []
    for member in tf.getmembers():
        if member.isdir():
            entries.append(_Entry(member.name, "dir", "", None))
        elif member.issym():
            entries.append(_Entry(member.name, "symlink", member.linkname, None))
        elif member.islnk():
            entries.append(_Entry(member.name, "hardlink", member.linkname, None))
        elif member.isfile():
            entries.append(_Entry(member.name, "file", "", lambda member=member: tf.extractfile(member)))
        else:
            raise _refuse(archive, member.name, "is a device, FIFO or other special file")
    return entries


def _write_entries(archive: Path, dest: Path, entries: list[_Entry]) -> None:
    """Check every entry, then write them below ``dest`` without ever following a link outside it."""
    for entry in entries:
        name = _check_name(archive, entry.name)
        if entry.kind in ("symlink", "hardlink"):
            _check_link(archive, name, entry.link, relative_to_root=entry.kind == "hardlink")
    root = dest.resolve()
    for entry in entries:
        name = _check_name(archive, entry.name)
        if not name:
            continue
        target = root / name
        parent = target.parent
        parent.mkdir(parents=True, exist_ok=True)
        # Re-checked on the real path: a link planted by an earlier entry cannot redirect this one.
        if not _inside(root, parent.resolve()):
            raise _refuse(archive, entry.name, "would be written through a link outside the destination")
        if entry.kind == "dir":
            target.mkdir(exist_ok=True)
        elif entry.kind == "symlink":
            if not _inside(root, (parent.resolve() / entry.link).resolve()):
                raise _refuse(archive, entry.name, f"links outside the destination ({entry.link!r})")
            os.symlink(entry.link, target)
        else:
            source = None
            if entry.kind == "hardlink":
                # A hard link becomes a copy of its (already extracted, in-tree) target.
                source = (root / _check_name(archive, entry.link)).resolve()
                if not _inside(root, source) or not source.is_file():
                    raise _refuse(archive, entry.name, f"links to {entry.link!r}, which is not a file inside the destination")
            # O_NOFOLLOW: a link planted under this name by an earlier entry is not followed.
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                raise _refuse(archive, entry.name, "would be written through a link") from None
            with os.fdopen(fd, "wb") as out, (open(source, "rb") if source else entry.open()) as src:
                shutil.copyfileobj(src, out, 1 << 20)


def extract_into(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extract ``archive`` (zip, or tar with any compression) into the existing directory ``dest``.

    Use it on a scratch directory: on failure ``dest`` may hold part of the archive.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _write_entries(archive, dest, _zip_entries(zf))
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tf:
                _write_entries(archive, dest, _tar_entries(archive, tf))
        else:
            raise WMoEError(f"{archive} is neither a zip nor a tar archive; delete it and download it again")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise WMoEError(f"{archive} is corrupt ({exc}); delete it and download it again") from None


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract ``archive`` into ``dest`` as one step: ``dest`` appears only once all of it is out."""
    dest = Path(dest)
    with atomic_dir(dest) as tmp:
        extract_into(archive, tmp)
    return dest
