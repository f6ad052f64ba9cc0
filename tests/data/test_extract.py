"""Safe extraction: real zip/tar archives extract exactly; crafted malicious ones are refused whole.

"Nothing written outside" is checked by snapshotting every path under the test's tmp folder (the
destination's parent and grandparent included) before and after the failed extraction.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from wmoe_clip.data.extract import extract_archive, is_archive
from wmoe_clip.errors import WMoEError

FILES = {"ds/a.txt": b"alpha", "ds/sub/b.bin": bytes(range(256)) * 40, "ds/sub/deeper/c.txt": b""}


def _zip(path: Path, entries: list[tuple[str, bytes | str, str]]) -> Path:
    """entries: (name, data, kind) with kind "file", "dir" or "symlink" (data = link target)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, kind in entries:
            info = zipfile.ZipInfo(name)
            if kind == "symlink":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            elif kind == "dir":
                info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
            zf.writestr(info, data)
    return path


def _tar(path: Path, entries: list[tuple[str, bytes | str, str]], mode: str = "w") -> Path:
    """entries: (name, data, kind) with kind "file", "dir", "symlink", "hardlink" or "chardev"."""
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE, "chardev": tarfile.CHRTYPE}
    with tarfile.open(path, mode) as tf:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            info.type = types[kind]
            info.mode = 0o755 if kind == "dir" else 0o644
            if kind in ("symlink", "hardlink"):
                info.linkname = data
                tf.addfile(info)
            elif kind == "file":
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("fmt", ["zip", "tar", "tar.gz", "tar.bz2", "tar.xz"])
def test_real_archives_extract_exactly(tmp_path, fmt):
    entries = [(n, d, "file") for n, d in FILES.items()]
    archive = tmp_path / f"ds.{fmt}"
    if fmt == "zip":
        _zip(archive, entries)
    else:
        _tar(archive, entries, mode="w" if fmt == "tar" else "w:" + fmt.split(".")[1])
    assert is_archive(archive)
    dest = extract_archive(archive, tmp_path / "out")
    found = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert found == FILES


def test_links_inside_the_destination_are_kept(tmp_path):
    tar = _tar(tmp_path / "links.tar", [
        ("ds/a.txt", b"alpha", "file"),
        ("ds/sub/link", "../a.txt", "symlink"),
        ("ds/hard.txt", "ds/a.txt", "hardlink"),
    ])
    dest = extract_archive(tar, tmp_path / "t")
    assert os.readlink(dest / "ds/sub/link") == "../a.txt" and (dest / "ds/sub/link").read_bytes() == b"alpha"
    assert (dest / "ds/hard.txt").read_bytes() == b"alpha"
    zf = _zip(tmp_path / "links.zip", [("ds/a.txt", b"alpha", "file"), ("ds/sub/link", "../a.txt", "symlink")])
    dest = extract_archive(zf, tmp_path / "z")
    assert os.readlink(dest / "ds/sub/link") == "../a.txt"


def _malicious(tmp_path: Path, fmt: str, case: str) -> Path:
    outside = tmp_path / "outside.txt"
    ok = ("ds/ok.txt", b"fine", "file")
    cases = {
        "absolute": [ok, (str(outside), b"pwned", "file")],
        "dotdot": [ok, ("../../outside.txt", b"pwned", "file")],
        "nested-dotdot": [ok, ("ds/x/../../../outside.txt", b"pwned", "file")],
        "backslash-dotdot": [ok, ("..\\..\\outside.txt", b"pwned", "file")],
        "drive-letter": [ok, ("C:/outside.txt", b"pwned", "file")],
        "symlink-absolute": [ok, ("ds/link", str(tmp_path), "symlink")],
        "symlink-outside": [ok, ("ds/link", "../../..", "symlink"), ("ds/link/outside.txt", b"pwned", "file")],
        # Each link alone looks harmless; together they point above the destination.
        "symlink-chain": [ok, ("a", ".", "symlink"), ("a/b", "..", "symlink"), ("a/b/outside.txt", b"pwned", "file")],
        "symlink-chain-only": [ok, ("a", ".", "symlink"), ("a/b", "..", "symlink")],
        # Harmless when made (s does not exist yet, so s/.. is the root); s -> . then lifts it above.
        "symlink-late-chain": [ok, ("l", "s/..", "symlink"), ("s", ".", "symlink")],
        # The same chain with a write below it: its folders must not be created above the destination.
        "symlink-late-chain-write": [ok, ("l", "s/..", "symlink"), ("s", ".", "symlink"),
                                     ("l/newdir/outside.txt", b"pwned", "file")],
        "symlink-loop": [ok, ("a", "b", "symlink"), ("b", "a", "symlink")],
        "symlink-over-file": [ok, ("ds/ok.txt", "../x", "symlink")],
        "hardlink-outside": [ok, ("ds/hard", "../outside.txt", "hardlink")],
        "hardlink-absolute": [ok, ("ds/hard", str(outside), "hardlink")],
        "device": [ok, ("ds/null", b"", "chardev")],
    }
    entries = cases[case]
    if fmt == "zip":
        return _zip(tmp_path / "evil.zip", entries)
    return _tar(tmp_path / "evil.tar.gz", entries, mode="w:gz")


LINK_CASES = ["symlink-absolute", "symlink-outside", "symlink-chain", "symlink-chain-only", "symlink-late-chain",
              "symlink-late-chain-write", "symlink-loop", "symlink-over-file"]
ZIP_CASES = ["absolute", "dotdot", "nested-dotdot", "backslash-dotdot", "drive-letter", *LINK_CASES]
TAR_CASES = ["absolute", "dotdot", "nested-dotdot", *LINK_CASES, "hardlink-outside", "hardlink-absolute", "device"]


@pytest.mark.filterwarnings("ignore:Duplicate name")  # symlink-over-file repeats a name on purpose
@pytest.mark.parametrize("fmt,case", [("zip", c) for c in ZIP_CASES] + [("tar", c) for c in TAR_CASES])
def test_malicious_archives_are_refused_and_write_nothing(tmp_path, fmt, case):
    archive = _malicious(tmp_path, fmt, case)
    dest = tmp_path / "raw" / "ds"
    dest.parent.mkdir()
    before = _snapshot(tmp_path)
    with pytest.raises(WMoEError, match="refusing to extract"):
        extract_archive(archive, dest)
    assert _snapshot(tmp_path) == before  # no dest, no temp dir, nothing outside


def test_links_are_made_last_and_never_written_through(tmp_path):
    # A link made before its target, and a hard link to a file, both inside: kept.
    tar = _tar(tmp_path / "order.tar", [
        ("ds/early", "late/c.txt", "symlink"),
        ("ds/late/c.txt", b"gamma", "file"),
        ("ds/copy.txt", "ds/late/c.txt", "hardlink"),
    ])
    dest = extract_archive(tar, tmp_path / "o")
    assert (dest / "ds/early").read_bytes() == b"gamma" and not (dest / "ds/copy.txt").is_symlink()
    assert (dest / "ds/copy.txt").read_bytes() == b"gamma"
    # A file below a link of the same archive is refused even when the link stays inside.
    tar = _tar(tmp_path / "through.tar", [("ds/sub/a.txt", b"a", "file"), ("ds/link", "sub", "symlink"),
                                          ("ds/link/b.txt", b"b", "file")])
    with pytest.raises(WMoEError, match="written through the link 'ds/link'"):
        extract_archive(tar, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_an_entry_that_cannot_be_written_is_a_clear_error(tmp_path):
    tar = _tar(tmp_path / "clash.tar", [("ds/x/a.txt", b"a", "file"), ("ds/x", b"not a folder", "file")])
    with pytest.raises(WMoEError, match=r"cannot extract .*clash\.tar into"):
        extract_archive(tar, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_failed_extraction_keeps_the_previous_complete_tree(tmp_path):
    dest = extract_archive(_zip(tmp_path / "good.zip", [("ds/a.txt", b"v1", "file")]), tmp_path / "ds")
    with pytest.raises(WMoEError):
        extract_archive(_malicious(tmp_path, "zip", "dotdot"), dest)
    assert _snapshot(dest) == {"ds", "ds/a.txt"} and (dest / "ds/a.txt").read_bytes() == b"v1"


@pytest.mark.parametrize("name", ["ds.zip", "ds.tar.gz"])
def test_truncated_archive_is_reported_as_corrupt(tmp_path, name):
    entries = [(n, d, "file") for n, d in FILES.items()]
    archive = _zip(tmp_path / name, entries) if name.endswith("zip") else _tar(tmp_path / name, entries, "w:gz")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(WMoEError, match="corrupt|neither a zip nor a tar"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
