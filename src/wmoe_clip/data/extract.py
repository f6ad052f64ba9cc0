"""Safe extraction of zip and tar archives.

Every entry is checked before anything is written: absolute names, drive letters, ``..``
components, links whose target leaves the destination, and special files (devices, FIFOs) are
refused, naming the archive and the entry. One writer serves zip and tar, independent of the
Python version's tar filters: files and folders are written first, with no-follow opens below
folders whose real path is checked, and symbolic links are created last, so no write can be
redirected by a link; an entry below a link of the archive is refused, and once all links exist,
each must really end inside the destination (a chain such as ``a -> s/..``, ``s -> .`` does not).
``extract_archive`` extracts into a temporary directory beside the destination and moves it into
place only when the whole archive succeeded.
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


def _zip_entries(archive: Path, zf: zipfile.ZipFile) -> list[_Entry]:
    entries = []
    for info in zf.infolist():
        if info.is_dir():
            entries.append(_Entry(info.filename, "dir", "", None))
        elif _zip_is_symlink(info):
            try:
                target = zf.read(info).decode("utf-8")
            except UnicodeDecodeError:
                raise _refuse(archive, info.filename, "is a link whose target is not text") from None
            entries.append(_Entry(info.filename, "symlink", target, None))
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


def _resolves_inside(root: Path, path: Path) -> bool:
    """Whether ``path``, every link along it followed, ends inside ``root``; a link loop does not."""
    try:
        return _inside(root, path.resolve())
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError up to Python 3.12, OSError after)
        return False


def _make_parent(archive: Path, root: Path, entry: _Entry, target: Path) -> None:
    """Create ``target``'s missing folders, refusing if the part that exists already leads outside ``root``."""
    existing = target.parent
    while not (existing.exists() or existing.is_symlink()):
        existing = existing.parent
    if not _resolves_inside(root, existing):
        raise _refuse(archive, entry.name, "would be written through a link outside the destination")
    target.parent.mkdir(parents=True, exist_ok=True)


def _through_link(name: str, links: dict[str, _Entry]) -> str | None:
    """The link entry that is a parent folder of ``name``, if any."""
    parts = name.split("/")
    return next((p for p in ("/".join(parts[:i]) for i in range(1, len(parts))) if p in links), None)


def _write_entries(archive: Path, dest: Path, entries: list[_Entry]) -> None:
    """Check every entry, then write them below ``dest`` without ever following a link outside it.

    Symbolic links are created last, so that no file or folder is ever written while a link exists in
    the tree; an entry *below* a link of the archive is refused. Each link's target is checked on its
    own, and once all exist, where each really ends up (``a -> s/..`` looks harmless until ``s -> .``).
    """
    names = []
    for entry in entries:
        name = _check_name(archive, entry.name)
        if entry.kind in ("symlink", "hardlink"):
            _check_link(archive, name, entry.link, relative_to_root=entry.kind == "hardlink")
        names.append(name)
    root = dest.resolve()
    links: dict[str, _Entry] = {}
    for entry, name in zip(entries, names):
        if not name:
            continue
        through = _through_link(name, links)
        if through is not None:
            raise _refuse(archive, entry.name, f"would be written through the link {through!r}")
        if entry.kind == "symlink":
            links[name] = entry  # a later entry of the same name replaces it, as tar does
            continue
        target = root / name
        _make_parent(archive, root, entry, target)
        if entry.kind == "dir":
            target.mkdir(exist_ok=True)
            continue
        source = None
        if entry.kind == "hardlink":
            # A hard link becomes a copy of its (already extracted, in-tree) target.
            source = root / _check_name(archive, entry.link)
            if not (_resolves_inside(root, source) and source.is_file()):
                raise _refuse(archive, entry.name,
                              f"links to {entry.link!r}, which is not a file inside the destination")
        # O_NOFOLLOW: never write through a link that was already at this name.
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise _refuse(archive, entry.name, "would be written through a link") from None
        with os.fdopen(fd, "wb") as out, (open(source, "rb") if source else entry.open()) as src:
            shutil.copyfileobj(src, out, 1 << 20)
    for name, entry in links.items():
        target = root / name
        _make_parent(archive, root, entry, target)
        if target.exists() or target.is_symlink():
            raise _refuse(archive, entry.name, "is a link with the name of a file or folder of the archive")
        os.symlink(entry.link, target)
    for name, entry in links.items():
        if not _resolves_inside(root, root / name):
            raise _refuse(archive, entry.name, f"links outside the destination or into a loop ({entry.link!r}), "
                          "through other links of the archive")


def extract_into(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extract ``archive`` (zip, or tar with any compression) into the existing directory ``dest``.

    Use it on a scratch directory: on failure ``dest`` may hold part of the archive.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _write_entries(archive, dest, _zip_entries(archive, zf))
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tf:
                _write_entries(archive, dest, _tar_entries(archive, tf))
        else:
            raise WMoEError(f"{archive} is neither a zip nor a tar archive; delete it and download it again")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise WMoEError(f"{archive} is corrupt ({exc}); delete it and download it again") from None
    except OSError as exc:  # e.g. a full disk, or an entry that names an existing folder as a file
        raise WMoEError(f"cannot extract {archive} into {dest}: {exc}") from None


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract ``archive`` into ``dest`` as one step: ``dest`` appears only once all of it is out."""
    dest = Path(dest)
    with atomic_dir(dest) as tmp:
        extract_into(archive, tmp)
    return dest
