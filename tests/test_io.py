import os
import re
import socket
import stat
import subprocess
import sys

import pytest

from wmoe_clip.io import atomic_dir, atomic_path, write_json


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_success_replaces_and_keeps_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").read_text() == '{\n  "x": 1\n}\n'
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "d"]


def test_atomic_dir_replaces_a_previous_complete_dir(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "old").write_text("1")
    with atomic_dir(tmp_path / "d") as d:
        (d / "new").write_text("2")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["new"]


def test_nan_is_refused_rather_than_written(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "m.json", {"auroc": float("nan")})
    assert not (tmp_path / "m.json").exists()


def test_a_dead_writers_temporary_is_removed_by_the_next_write_and_a_live_ones_kept(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())  # as temporaries name their host
    dead = tmp_path / f".tmp-out.json.{child.pid}@{host}.abc"
    live = tmp_path / f".tmp-out.json.{os.getpid()}@{host}.def"
    other_host = tmp_path / f".tmp-out.json.{child.pid}@elsewhere-{host}.ghi"
    for path in (dead, live, other_host):
        path.write_text("half written")
    write_json(tmp_path / "out.json", {"x": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", live.name, other_host.name])
