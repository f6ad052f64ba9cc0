"""Safe extraction of zip and tar archives.

Every entry is checked before anything is written: absolute names, drive letters, ``..``
components, links whose target leaves the destination, and special files (devices, FIFOs) are
refused, naming the archive and the entry. Writing then re-checks real paths (tar: the standard
library's ``data`` filter; zip: no-follow writes below a resolved parent), so a link planted by an
earlier entry cannot redirect a later one. ``extract_archive`` extracts into a temporary directory
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
from pathlib import Path

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


def _extract_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            name = _check_name(archive, info.filename)
            if _zip_is_symlink(info):
                _check_link(archive, name, zf.read(info).decode("utf-8"), relative_to_root=False)
        root = dest.resolve()
        for info in infos:
            name = _check_name(archive, info.filename)
            if not name:
                continue
            target = root / name
            parent = target.parent
            parent.mkdir(parents=True, exist_ok=True)
            if not _inside(root, parent.resolve()):
                raise _refuse(archive, info.filename, "would be written through a link outside the destination")
            if info.is_dir():
                target.mkdir(exist_ok=True)
            elif _zip_is_symlink(info):
                link = zf.read(info).decode("utf-8")
                if not _inside(root, (parent.resolve() / link).resolve()):
                    raise _refuse(archive, info.filename, f"links outside the destination ({link!r})")
                os.symlink(link, target)
            else:
                # O_NOFOLLOW: a link planted under this name by an earlier entry is not followed.
                try:
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
                except OSError as exc:
                    if exc.errno != errno.ELOOP:
                        raise
                    raise _refuse(archive, info.filename, "would be written through a link") from None
                with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                    shutil.copyfileobj(src, out, 1 << 20)


def _extract_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        for member in members:
            name = _check_name(archive, member.name)
            if member.issym():
                _check_link(archive, name, member.linkname, relative_to_root=False)
            elif member.islnk():
                _check_link(archive, name, member.linkname, relative_to_root=True)
            elif not (member.isfile() or member.isdir()):
                raise _refuse(archive, member.name, "is a device, FIFO or other special file")
        try:
            tf.extractall(dest, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise _refuse(archive, exc.tarinfo.name, str(exc)) from None


def extract_into(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extract ``archive`` (zip, or tar with any compression) into the existing directory ``dest``.

    Use it on a scratch directory: on failure ``dest`` may hold part of the archive.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, dest)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, dest)
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
