"""synth, prepare and download against a careless user and a hostile network."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest

from robustness_util import assert_one_line_error, run_cli, tree
from wmoe_clip.cli import main

# ------------------------------------------------------------------------------------- 1. synth


def test_synth_refuses_to_replace_a_folder_it_did_not_write(tmp_path, capsys):
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "chapters" / "1.tex").write_text("two years of work")
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, "synth", "mvtec", "--out", thesis, "--size", "2")
    line = assert_one_line_error(err, rc)
    assert (f"--out {thesis} exists and was not written by wmoe-clip synth (it has no SYNTHETIC marker)" in line
            and "pass --force to replace it" in line)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("out", [".", ".."])
def test_synth_never_replaces_the_current_folder(tmp_path, monkeypatch, capsys, out):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    monkeypatch.chdir(work)
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, "synth", "mvtec", "--out", out, "--size", "2", "--force")
    line = assert_one_line_error(err, rc)
    assert f"refusing to replace --out {out}: it holds the current folder ({work})" in line
    assert tree(tmp_path) == before


def test_synth_never_replaces_the_source_tree(tmp_path, monkeypatch, capsys):
    import wmoe_clip.data.synth as synth

    source = tmp_path / "checkout" / "wmoe-clip"
    source.mkdir(parents=True)
    (source / "pyproject.toml").write_text("[project]\n")
    monkeypatch.setattr(synth, "_source_tree", lambda: source)
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, "synth", "mvtec", "--out", tmp_path / "checkout", "--size", "2", "--force")
    assert "it holds the wmoe-clip source tree" in assert_one_line_error(err, rc)
    assert tree(tmp_path) == before


def test_synth_replaces_its_own_output_and_with_force_anything(tmp_path, capsys):
    out = tmp_path / "raw"
    assert run_cli(capsys, "synth", "btad", "--out", out, "--size", "2")[0] == 0
    first = tree(out)
    assert run_cli(capsys, "synth", "btad", "--out", out, "--size", "2", "--seed", "1")[0] == 0
    assert (out / "SYNTHETIC").is_file() and tree(out) != first
    other = tmp_path / "other"
    other.mkdir()
    (other / "old.txt").write_text("x")
    assert run_cli(capsys, "synth", "btad", "--out", other, "--size", "2", "--force")[0] == 0
    assert not (other / "old.txt").exists() and (other / "SYNTHETIC").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "raw"]  # no temporary left behind


# ----------------------------------------------------------------------------------- 5. prepare


def test_a_failed_prepare_rerun_keeps_the_previous_manifest_and_report(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    assert run_cli(capsys, "synth", "colondb", "--out", raw, "--size", "2")[0] == 0
    assert run_cli(capsys, "prepare", "colondb", "--raw", raw, "--out", out)[0] == 0
    before = tree(out)
    (raw / "CVC-ColonDB" / "masks" / "1.png").unlink()
    rc, _, err = run_cli(capsys, "prepare", "colondb", "--raw", raw, "--out", out)
    assert rc == 2 and "missing mask: images/1.png" in err
    assert tree(out) == before
    # The report describes the manifest beside it.
    meta = json.loads((out / "meta.json").read_text())
    report = json.loads((out / "prepare.json").read_text())
    n_found = sum(report["counts"]["total"]["found"])
    assert n_found == sum(len(r) for r in meta["test"].values()) == 2


def test_a_dangling_symlink_in_a_raw_folder_is_reported(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    assert run_cli(capsys, "synth", "mvtec", "--out", raw, "--size", "2")[0] == 0
    victim = raw / "bottle" / "test" / "good" / "000.png"
    victim.unlink()
    victim.symlink_to(tmp_path / "moved-away.png")
    rc, _, err = run_cli(capsys, "prepare", "mvtec", "--raw", raw, "--out", out)
    assert rc == 2
    assert (f"dangling link: bottle/test/good/000.png: symbolic link to {tmp_path / 'moved-away.png'}, "
            "which does not exist") in err
    assert not out.exists()
    rc, _, err = run_cli(capsys, "prepare", "mvtec", "--raw", raw, "--out", out, "--skip-bad")
    assert rc == 0 and "warning: skipped dangling link: bottle/test/good/000.png" in err
    skipped = json.loads((out / "prepare.json").read_text())["skipped"]
    assert [(s["kind"], s["path"]) for s in skipped] == [("dangling link", "bottle/test/good/000.png")]


# ---------------------------------------------------------------------------------- 6. download


@pytest.fixture
def silent_server():
    """A server that accepts connections (the kernel does, from the backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _run_bounded(args: list[str], seconds: float = 60) -> int:
    """``main(args)`` in a thread: the test fails instead of hanging when the command does not give up."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", main(args)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"wmoe-clip {args[0]} still waiting after {seconds} s"
    return result["rc"]


def test_download_from_a_silent_server_gives_up_within_its_visible_budget(silent_server, tmp_path, capsys):
    dest = tmp_path / "mvtec"
    rc = _run_bounded(["download", "mvtec", "--dest", str(dest), "--url-base", silent_server,
                       "--stall-timeout", "0.5", "--retries", "1"])
    out, err = capsys.readouterr()
    assert "(a connection is dropped after 0.5 s without data; 1 of 1 retries left (--stall-timeout, --retries))" in out
    url = f"{silent_server}/mvtec_anomaly_detection.tar.xz"
    assert f"no data from {url} for 0.5 s; retry 1 of 1 in 1 s" in err
    line = assert_one_line_error(err.replace(f"{url} for 0.5 s; retry", "(retry line)"), rc)
    assert f"no data from {url} for 0.5 s; gave up after 1 retries (--retries, --stall-timeout)." in line
    assert not (dest / "download.json").exists()


class _StallingHandler(http.server.BaseHTTPRequestHandler):
    """Sends half the body, then goes silent (connection open) the first time; the rest on a Range request."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        data, rng = self.server.data, self.headers.get("Range")
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if start == 0:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.server.release.wait(30)
            return
        self.wfile.write(data[start:])


def test_a_transfer_that_stalls_midway_is_resumed(tmp_path, capsys):
    from wmoe_clip.data.download import RetryBudget, fetch

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StallingHandler)
    srv.data, srv.release = bytes(range(256)) * 400, threading.Event()
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/a.bin"
        budget = RetryBudget(retries=1, stall_timeout=0.5, backoff=0)
        fetch(url, tmp_path / "a.bin", budget=budget)
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
    assert (tmp_path / "a.bin").read_bytes() == srv.data and budget.used == 1
    assert f"no data from {url} for 0.5 s (stalled at byte {len(srv.data) // 2})" in capsys.readouterr().err


@pytest.mark.parametrize("flags,message", [
    (["--retries", "-1"], "--retries must be 0 or more, got -1"),
    (["--stall-timeout", "0"], "--stall-timeout must be a positive number of seconds, got 0.0"),
])
def test_download_network_flags_are_validated(tmp_path, capsys, flags, message):
    rc, _, err = run_cli(capsys, "download", "mvtec", "--dest", tmp_path / "d", *flags)
    assert message in assert_one_line_error(err, rc)
    assert not (tmp_path / "d").exists()
