"""Fixtures of the robustness tests: tiny trained models and results made through the
command line as a user would, and destinations that cannot be written (permissions, a read-only file
system, a full disk). Each test also proves, with ``robustness_util.tree``, that nothing that existed
before was lost or changed."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from wmoe_clip.cli import main


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """key -> a prepared synthetic stand-in (two images per class), made with synth and prepare."""
    made = {}

    def make(key: str) -> Path:
        if key not in made:
            base = tmp_path_factory.mktemp(f"data-{key}")
            assert main(["synth", key, "--out", str(base / "raw"), "--size", "2"]) == 0
            assert main(["prepare", key, "--raw", str(base / "raw"), "--out", str(base / "prepared")]) == 0
            made[key] = base / "prepared"
        return made[key]

    return make


@pytest.fixture(scope="session")
def results(tmp_path_factory):
    """A results folder in the workflow's layout, filled by ``trained`` and ``evaluated``."""
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="session")
def trained(prepared, results):
    """source -> the folder of the tiny full model trained one epoch on it (no MLflow)."""
    made = {}

    def make(source: str) -> Path:
        if source not in made:
            out = results / "train" / source / "full" / "seed0"
            assert main(["train", "--config", "tiny", "--source", source, "--data", str(prepared(source)),
                         "--variant", "full", "--epochs", "1", "--out", str(out), "--no-tracking", "--quiet"]) == 0
            made[source] = out
        return made[source]

    return make


@pytest.fixture(scope="session")
def evaluated(prepared, trained, results):
    """(source, target) -> the evaluation JSON of the tiny model, in the results layout."""
    made = {}

    def make(source: str, target: str) -> Path:
        if (source, target) not in made:
            out = results / "eval" / source / target / "full" / "seed0.json"
            assert main(["evaluate", "--checkpoint", str(trained(source) / "model.pt"), "--target", target,
                         "--data", str(prepared(target)), "--out", str(out), "--no-tracking", "--quiet"]) == 0
            made[source, target] = out
        return made[source, target]

    return make


def _chattr(flag: str, path: Path) -> bool:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.fixture
def unwritable_dirs(tmp_path):
    """kind -> a folder that takes no new file: "permission" (mode 555, or the immutable attribute for
    root, whom modes do not stop), "read-only file system" and "full disk" (small tmpfs mounts, root only)."""
    locked, mounts = [], []

    def make(kind: str) -> Path:
        path = tmp_path / kind.replace(" ", "-")
        path.mkdir()
        if kind == "permission":
            if os.geteuid() != 0:
                path.chmod(0o555)
            elif not _chattr("+i", path):
                pytest.skip("cannot make a folder unwritable for root here (chattr +i failed)")
            locked.append(path)
            return path
        if os.geteuid() != 0:
            pytest.skip(f"a {kind} is simulated with a tmpfs mount, which needs root")
        options = "ro,size=1m" if kind == "read-only file system" else "size=64k"
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "wmoe-test", str(path)],
                          capture_output=True).returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to simulate a {kind}")
        mounts.append(path)
        if kind == "full disk":
            with open(path / "filler", "wb", buffering=0) as fh:
                try:
                    while True:
                        fh.write(b"\0" * 4096)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
        return path

    yield make
    for path in locked:
        if os.geteuid() == 0:
            _chattr("-i", path)
        else:
            path.chmod(0o755)
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A folder on a 512 KiB tmpfs (root only): room for small outputs, not for large ones."""
    if os.geteuid() != 0:
        pytest.skip("a small disk is simulated with a tmpfs mount, which needs root")
    path = tmp_path / "small-disk"
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "wmoe-test", str(path)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs to simulate a small disk")
    yield path
    subprocess.run(["umount", "-l", str(path)], capture_output=True)
