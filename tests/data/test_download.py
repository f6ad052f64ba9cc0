"""Download, verification and the ``download``/``download-weights`` commands, against a local server.

The server runs on 127.0.0.1 in a thread and serves real archives; it honours or ignores ``Range``,
answers 404 for unknown paths and can drop a connection halfway through a body. Nothing here
reaches the internet.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import subprocess
import tarfile
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wmoe_clip.cli import main
from wmoe_clip.data import registry
from wmoe_clip.data.download import RetryBudget, download_dataset, fetch
from wmoe_clip.data.registry import DatasetSpec, DownloadSpec, FileSpec
from wmoe_clip.data.weights import SOURCES, WEIGHTS_FILE, download_weights, registry_source
from wmoe_clip.errors import WMoEError


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        srv = self.server
        path = self.path
        rng = self.headers.get("Range")
        srv.log.append((path, rng))
        if srv.unavailable.get(path, 0) > 0:
            srv.unavailable[path] -= 1
            self.send_error(503)
            return
        data = srv.files.get(path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if rng and not srv.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.drops.get(path, 0) > 0:
            # Announce the full length, send half, hang up: what a flaky network looks like.
            srv.drops[path] -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.drops, srv.unavailable, srv.log, srv.ignore_range = {}, {}, {}, [], False
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _png_bytes(seed: int, size: int = 12) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _targz_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _spec(kind: str, files: tuple[FileSpec, ...], totals=(1, 1)) -> DatasetSpec:
    return DatasetSpec(
        key="toy", display_name="Toy", domain="industrial", image_metrics=True, pixel_metrics=True,
        classes={"widget": totals}, licence="CC0", homepage="https://example.org/toy", description="test split",
        download=DownloadSpec(kind=kind, files=files, manual="Ask the toy maker for toy.zip."),
        citation="Nobody, 2026.", totals=totals,
    )


def _payload(n: int = 300_000) -> bytes:
    return np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8).tobytes()


# ----------------------------------------------------------------------------------------- fetch


def test_fetch_verifies_and_returns_sha256(server, tmp_path):
    data = _payload()
    server.files["/a.bin"] = data
    result = fetch(server.base + "/a.bin", tmp_path / "a.bin", sha256=_sha(data))
    assert (tmp_path / "a.bin").read_bytes() == data
    assert result.sha256 == _sha(data) and result.size == len(data)
    assert not (tmp_path / "a.bin.part").exists()


def test_fetch_resumes_a_dropped_connection_with_range(server, tmp_path):
    data = _payload()
    server.files["/a.bin"] = data
    server.drops["/a.bin"] = 1
    fetch(server.base + "/a.bin", tmp_path / "a.bin", sha256=_sha(data), budget=RetryBudget(backoff=0))
    assert (tmp_path / "a.bin").read_bytes() == data
    assert server.log == [("/a.bin", None), ("/a.bin", f"bytes={len(data) // 2}-")]


def test_fetch_retries_a_server_error(server, tmp_path):
    data = _payload(1000)
    server.files["/a.bin"] = data
    server.unavailable["/a.bin"] = 2
    fetch(server.base + "/a.bin", tmp_path / "a.bin", sha256=_sha(data), budget=RetryBudget(backoff=0))
    assert (tmp_path / "a.bin").read_bytes() == data and len(server.log) == 3


def test_interrupted_fetch_keeps_part_file_and_next_run_resumes(server, tmp_path):
    data = _payload()
    server.files["/a.bin"] = data
    server.drops["/a.bin"] = 1
    with pytest.raises(WMoEError, match="run again to resume"):
        fetch(server.base + "/a.bin", tmp_path / "a.bin", sha256=_sha(data), budget=RetryBudget(retries=0))
    part = tmp_path / "a.bin.part"
    assert part.read_bytes() == data[: len(data) // 2]
    assert not (tmp_path / "a.bin").exists()
    fetch(server.base + "/a.bin", tmp_path / "a.bin", sha256=_sha(data))
    assert (tmp_path / "a.bin").read_bytes() == data
    assert server.log[-1] == ("/a.bin", f"bytes={len(data) // 2}-")


def test_fetch_restarts_when_server_ignores_range(server, tmp_path):
    data = _payload()
    server.files["/a.bin"] = data
    server.ignore_range = True
    (tmp_path / "a.bin.part").write_bytes(b"stale bytes from another file")
    fetch(server.base + "/a.bin", tmp_path / "a.bin", sha256=_sha(data))
    assert (tmp_path / "a.bin").read_bytes() == data


def test_fetch_accepts_part_file_that_is_already_complete(server, tmp_path):
    data = _payload(1000)
    server.files["/a.bin"] = data
    (tmp_path / "a.bin.part").write_bytes(data)
    fetch(server.base + "/a.bin", tmp_path / "a.bin", sha256=_sha(data))
    assert (tmp_path / "a.bin").read_bytes() == data
    assert server.log == [("/a.bin", "bytes=1000-")]  # answered 416: nothing left to send


def test_checksum_mismatch_fails_and_leaves_nothing(server, tmp_path):
    server.files["/a.bin"] = _payload()
    with pytest.raises(WMoEError, match="sha256 mismatch"):
        fetch(server.base + "/a.bin", tmp_path / "a.bin", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_404_names_the_url(server, tmp_path):
    with pytest.raises(WMoEError, match=r"/missing\.bin failed: HTTP 404"):
        fetch(server.base + "/missing.bin", tmp_path / "missing.bin")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- download_dataset


def _toy_archives():
    zip_members = {"toy/widget/test/good/000.png": _png_bytes(0), "toy/widget/test/bad/000.png": _png_bytes(1)}
    tar_members = {"toy/widget/ground_truth/bad/000_mask.png": _png_bytes(2)}
    return zip_members, _zip_bytes(zip_members), tar_members, _targz_bytes(tar_members)


def test_download_dataset_fetches_verifies_extracts_and_records(server, tmp_path):
    zip_members, zip_data, tar_members, tar_data = _toy_archives()
    server.files.update({"/mirror/toy.zip": zip_data, "/mirror/masks.tar.gz": tar_data})
    spec = _spec("http", (FileSpec("https://unreachable.invalid/toy.zip", "toy.zip", _sha(zip_data)),
                          FileSpec("https://unreachable.invalid/masks.tar.gz", "masks.tar.gz", None)))
    dest = tmp_path / "raw" / "toy"
    download_dataset(spec, dest, url_base=server.base + "/mirror")
    for name, data in {**zip_members, **tar_members}.items():
        assert (dest / name).read_bytes() == data
    record = json.loads((dest / "download.json").read_text())
    assert record["dataset"] == "toy"
    by_name = {f["filename"]: f for f in record["files"]}
    assert by_name["toy.zip"]["sha256_source"] == "registry"
    assert by_name["masks.tar.gz"] == {
        "filename": "masks.tar.gz", "url": server.base + "/mirror/masks.tar.gz", "bytes": len(tar_data),
        "sha256": _sha(tar_data), "sha256_source": "computed",
    }
    assert (dest / ".downloads" / "toy.zip").read_bytes() == zip_data
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["toy"]  # no temp dirs left

    n_requests = len(server.log)
    download_dataset(spec, dest, url_base=server.base + "/mirror")
    assert len(server.log) == n_requests  # complete: nothing fetched again


@pytest.mark.parametrize("problem", ["mismatch", "malicious", "404"])
def test_failed_download_leaves_no_dataset(server, tmp_path, problem):
    _, zip_data, _, _ = _toy_archives()
    sha = _sha(zip_data)
    if problem == "mismatch":
        sha = "f" * 64
    if problem == "malicious":
        zip_data = _zip_bytes({"toy/ok.png": _png_bytes(0), "../escaped.txt": b"pwned"})
        sha = _sha(zip_data)
    if problem != "404":
        server.files["/toy.zip"] = zip_data
    spec = _spec("http", (FileSpec("https://unreachable.invalid/toy.zip", "toy.zip", sha),))
    dest = tmp_path / "raw" / "toy"
    with pytest.raises(WMoEError):
        download_dataset(spec, dest, url_base=server.base)
    assert not (dest / "download.json").exists()
    assert not (dest / "toy").exists()
    assert not (tmp_path / "raw" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["toy"]


def test_interrupted_extraction_keeps_the_previous_complete_dataset(server, tmp_path, monkeypatch):
    zip_members, zip_data, _, _ = _toy_archives()
    server.files["/toy.zip"] = zip_data
    spec = _spec("http", (FileSpec("https://unreachable.invalid/toy.zip", "toy.zip", _sha(zip_data)),))
    dest = tmp_path / "raw" / "toy"
    download_dataset(spec, dest, url_base=server.base)
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}

    def killed_midway(archive, into):
        (Path(into) / "toy").mkdir()
        (Path(into) / "toy" / "half.png").write_bytes(b"half")
        raise KeyboardInterrupt  # Ctrl-C (or a kill) in the middle of extracting

    monkeypatch.setattr("wmoe_clip.data.download.extract_into", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        download_dataset(spec, dest, url_base=server.base, force=True)
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["toy"]


def test_manual_dataset_missing_names_source_and_exact_path(tmp_path):
    dest = tmp_path / "raw" / "toy"
    with pytest.raises(WMoEError) as err:
        download_dataset(_spec("manual", ()), dest)
    msg = str(err.value)
    assert "https://example.org/toy" in msg and f"{dest}/" in msg and "Ask the toy maker" in msg


def test_manual_dataset_placed_archive_is_verified_and_used(tmp_path):
    zip_members, zip_data, _, _ = _toy_archives()
    dest = tmp_path / "toy"
    spec = _spec("manual", (FileSpec("", "toy.zip", _sha(zip_data)),))
    with pytest.raises(WMoEError, match=re.escape(str(dest / ".downloads" / "toy.zip"))):
        download_dataset(spec, dest)
    (dest / ".downloads").mkdir(parents=True)
    (dest / ".downloads" / "toy.zip").write_bytes(zip_data[:-1] + b"x")
    with pytest.raises(WMoEError, match="sha256 mismatch"):
        download_dataset(spec, dest)
    assert not (dest / "download.json").exists()
    (dest / ".downloads" / "toy.zip").write_bytes(zip_data)
    download_dataset(spec, dest)
    for name, data in zip_members.items():
        assert (dest / name).read_bytes() == data
    assert json.loads((dest / "download.json").read_text())["files"][0]["sha256"] == _sha(zip_data)


def test_manual_dataset_archive_put_into_dest_is_extracted_and_recorded(tmp_path):
    # The real manual entries name no file: whatever archive the user drops into DEST is used.
    zip_members, zip_data, tar_members, tar_data = _toy_archives()
    dest = tmp_path / "toy"
    dest.mkdir()
    (dest / "DATA_three.zip").write_bytes(zip_data)
    (dest / "masks.tar.gz").write_bytes(tar_data)
    download_dataset(_spec("manual", ()), dest)
    for name, data in {**zip_members, **tar_members}.items():
        assert (dest / name).read_bytes() == data
    assert (dest / ".downloads" / "DATA_three.zip").read_bytes() == zip_data
    assert not (dest / "DATA_three.zip").exists()
    record = json.loads((dest / "download.json").read_text())
    assert record["source"] == "placed archive"
    assert {f["filename"]: (f["sha256"], f["sha256_source"]) for f in record["files"]} == {
        "DATA_three.zip": (_sha(zip_data), "computed"), "masks.tar.gz": (_sha(tar_data), "computed")}


def test_manual_dataset_malicious_placed_archive_is_refused(tmp_path):
    dest = tmp_path / "raw" / "toy"
    dest.mkdir(parents=True)
    (dest / "evil.zip").write_bytes(_zip_bytes({"ok.png": _png_bytes(0), "../../escaped.txt": b"pwned"}))
    with pytest.raises(WMoEError, match="refusing to extract"):
        download_dataset(_spec("manual", ()), dest)
    assert not (dest / "download.json").exists() and not (tmp_path / "escaped.txt").exists()
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["toy"]
    assert [p.name for p in dest.iterdir()] == ["evil.zip"]  # left where the user put it


def test_manual_dataset_placed_folder_is_checked_against_counts(tmp_path):
    dest = tmp_path / "toy"
    (dest / "widget").mkdir(parents=True)
    (dest / "widget" / "000.png").write_bytes(_png_bytes(0))
    spec = _spec("manual", (), totals=(1, 1))
    with pytest.raises(WMoEError, match="holds 1 images, fewer than the 2"):
        download_dataset(spec, dest)
    assert not (dest / "download.json").exists()
    (dest / "widget" / "001.JPG").write_bytes(_png_bytes(1))
    download_dataset(spec, dest)
    record = json.loads((dest / "download.json").read_text())
    assert record["source"] == "placed folder" and record["n_images"] == 2


def test_cli_download_with_url_base(server, tmp_path, monkeypatch, capsys):
    zip_members, zip_data, _, _ = _toy_archives()
    server.files["/toy.zip"] = zip_data
    spec = _spec("http", (FileSpec("https://unreachable.invalid/toy.zip", "toy.zip", None),))
    monkeypatch.setattr(registry, "get", lambda key: spec)
    dest = tmp_path / "toy"
    assert main(["download", "btad", "--dest", str(dest), "--url-base", server.base]) == 0
    assert _sha(zip_data) in capsys.readouterr().out  # the computed hash is shown, not only recorded
    assert (dest / next(iter(zip_members))).is_file()
    server.files.clear()
    assert main(["download", "btad", "--dest", str(tmp_path / "other"), "--url-base", server.base]) == 2
    assert "HTTP 404" in capsys.readouterr().err


# -------------------------------------------------------------------------------- download-weights


def _tiny_clip():
    from open_clip.model import CLIP

    return CLIP(
        embed_dim=8, quick_gelu=True,
        vision_cfg={"layers": 1, "width": 16, "head_width": 8, "patch_size": 8, "image_size": 16},
        text_cfg={"context_length": 8, "vocab_size": 32, "width": 16, "heads": 2, "layers": 1},
    )


class _Holder(torch.nn.Module):
    """Carries a model's persistent state, so that tracing it gives a TorchScript archive like OpenAI's."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        for name, child in model.named_children():
            setattr(self, name, child)
        for name, param in model.named_parameters(recurse=False):
            self.register_parameter(name, param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.fixture(scope="module")
def torchscript_weights(tmp_path_factory):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _tiny_clip()
    path = tmp_path_factory.mktemp("jit") / "ViT-tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, but OpenAI shipped it
        torch.jit.trace(_Holder(model), torch.zeros(1)).save(str(path))
    return model.state_dict(), path.read_bytes()


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
def test_download_weights_gives_a_file_open_clip_loads(server, tmp_path, torchscript_weights):
    reference, data = torchscript_weights
    server.files["/clip/ViT-tiny.pt"] = data
    server.drops["/clip/ViT-tiny.pt"] = 1
    out = download_weights(tmp_path / "weights", url=server.base + "/clip/ViT-tiny.pt", sha256=_sha(data).upper())
    assert out == tmp_path / "weights" / WEIGHTS_FILE
    fresh = _tiny_clip()
    import open_clip

    open_clip.load_checkpoint(fresh, str(out))  # weights_only=True, strict=True: open_clip's default path
    for key, value in reference.items():
        assert torch.equal(fresh.state_dict()[key], value), key
    record = json.loads((tmp_path / "weights" / "weights.json").read_text())
    assert record["source_sha256"] == _sha(data)
    assert not (tmp_path / "weights" / ".downloads" / "ViT-tiny.pt").exists()  # TorchScript copy removed

    n_requests = len(server.log)
    assert download_weights(tmp_path / "weights", url=server.base + "/clip/ViT-tiny.pt", sha256=_sha(data)) == out
    assert len(server.log) == n_requests


def test_download_weights_checksum_mismatch(server, tmp_path, capsys, torchscript_weights):
    _, data = torchscript_weights
    server.files["/clip/ViT-tiny.pt"] = data
    dest = tmp_path / "weights"
    code = main(["download-weights", "--dest", str(dest), "--url", server.base + "/clip/ViT-tiny.pt",
                 "--sha256", "1" * 64])
    assert code == 2 and "sha256 mismatch" in capsys.readouterr().err
    assert not (dest / WEIGHTS_FILE).exists()
    with pytest.raises(WMoEError, match="--sha256"):
        download_weights(dest, url=server.base + "/clip/ViT-tiny.pt")


def test_registry_source_is_open_clips_vit_l14_336_url():
    url, sha = registry_source()
    assert url.endswith("/ViT-L-14-336px.pt") and "openaipublic" in url
    # The full sha256 published in OpenAI's CLIP repository for ViT-L/14@336px.
    assert sha == "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"


def _git_blob_id(data: bytes, tmp_path) -> str:
    """git's own object id of ``data`` (an independent reference for the verification)."""
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    return subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def released(monkeypatch, tmp_path):
    """Two stand-in checkpoints served where the repository's are, with their git blob ids."""
    from wmoe_clip.data import weights

    files = {"checkpoints/run_a/epoch_15.pth": b"prompt learner A" * 1000,
             "checkpoints/run_b/epoch_15.pth": b"prompt learner B" * 999}
    ckpts = tuple(weights.ReleasedCheckpoint(path, _git_blob_id(data, tmp_path), "visa", "mvtec")
                  for path, data in files.items())
    monkeypatch.setattr(weights, "RELEASED", ckpts)
    return files


def test_released_checkpoints_are_fetched_verified_and_recorded(server, tmp_path, released, capsys):
    for path, data in released.items():
        server.files[f"/repo/{path}"] = data
    dest = tmp_path / "weights"
    code = main(["download-weights", "--dest", str(dest), "--anomalyclip", "--skip-clip",
                 "--anomalyclip-url-base", server.base + "/repo/"])
    assert code == 0
    for path, data in released.items():
        assert (dest / "anomalyclip" / path.removeprefix("checkpoints/")).read_bytes() == data
    record = json.loads((dest / "anomalyclip" / "checkpoints.json").read_text())
    assert record["run_a/epoch_15.pth"]["sha256"] == _sha(released["checkpoints/run_a/epoch_15.pth"])
    n = len(server.log)
    assert main(["download-weights", "--dest", str(dest), "--anomalyclip", "--skip-clip",
                 "--anomalyclip-url-base", server.base + "/repo"]) == 0
    assert len(server.log) == n and "in place" in capsys.readouterr().out


def test_a_released_checkpoint_behind_a_git_lfs_pointer_comes_from_the_media_url(server, tmp_path, released, monkeypatch):
    from wmoe_clip.data import weights

    data = released["checkpoints/run_a/epoch_15.pth"]
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{_sha(data)}\nsize {len(data)}\n".encode()
    monkeypatch.setattr(weights, "RELEASED", (weights.ReleasedCheckpoint(
        "checkpoints/run_a/epoch_15.pth", _git_blob_id(pointer, tmp_path), "visa", "mvtec"),))
    server.files["/raw/checkpoints/run_a/epoch_15.pth"] = pointer
    server.files["/media/checkpoints/run_a/epoch_15.pth"] = data
    out = weights.released_checkpoints(tmp_path / "w", raw_base=server.base + "/raw", media_base=server.base + "/media")
    assert out[0].read_bytes() == data
    server.files["/media/checkpoints/run_a/epoch_15.pth"] = data[:-1] + b"X"
    with pytest.raises(WMoEError, match="sha256 mismatch"):
        weights.released_checkpoints(tmp_path / "w2", raw_base=server.base + "/raw", media_base=server.base + "/media")


def test_a_wrong_released_checkpoint_is_refused_and_removed(server, tmp_path, released, capsys):
    for path, data in released.items():
        server.files[f"/repo/{path}"] = data + b"changed"
    dest = tmp_path / "weights"
    code = main(["download-weights", "--dest", str(dest), "--anomalyclip", "--skip-clip",
                 "--anomalyclip-url-base", server.base + "/repo"])
    err = capsys.readouterr().err
    assert code == 2 and "is not zqhang/AnomalyCLIP's checkpoints/run_a/epoch_15.pth" in err and "\n" not in err.strip()
    assert not list((dest / "anomalyclip").rglob("*.pth"))


def test_released_checkpoints_placed_by_hand_are_checked(tmp_path, released):
    from wmoe_clip.data import weights

    root = tmp_path / "weights" / "anomalyclip"
    for path, data in released.items():
        (root / path.removeprefix("checkpoints/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.removeprefix("checkpoints/")).write_bytes(data)
    assert len(weights.released_checkpoints(tmp_path / "weights", raw_base="http://127.0.0.1:9/none")) == 2
    (root / "run_b" / "epoch_15.pth").write_bytes(b"something else")
    with pytest.raises(WMoEError, match="placed file .*run_b/epoch_15.pth is not .*Remove it"):
        weights.released_checkpoints(tmp_path / "weights", raw_base="http://127.0.0.1:9/none")
    assert (root / "run_b" / "epoch_15.pth").exists()  # a user's file is never deleted


def test_the_released_checkpoints_are_those_of_the_references_file():
    import yaml

    from wmoe_clip.data.weights import ANOMALYCLIP_COMMIT, RELEASED

    refs = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "references" / "anomalyclip.yaml").read_text())
    assert refs["source"]["commit"] == ANOMALYCLIP_COMMIT
    assert [(c["checkpoint"], c["git_blob_sha1"], c["training"], c["dataset"]) for c in refs["released"]["checkpoints"]] \
        == [(c.path, c.git_blob_sha1, c.trained_on, c.tested_on) for c in RELEASED]


def test_registry_source_of_vit_b16_plus_240_publishes_a_sha256_prefix():
    url, prefix = registry_source("ViT-B-16-plus-240")
    assert url == ("https://github.com/mlfoundations/open_clip/releases/download/v0.2-weights/"
                   "vit_b_16_plus_240-laion400m_e31-8fb26589.pt")
    assert prefix == "8fb26589"


@pytest.fixture(scope="module")
def pickled_weights(tmp_path_factory):
    """A checkpoint as open_clip's releases ship them: the state dict under "state_dict", "module."-prefixed."""
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = _tiny_clip()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"epoch": 31, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return model.state_dict(), path.read_bytes()


def test_download_weights_records_the_sha256_open_clip_publishes_only_a_prefix_of(server, tmp_path, monkeypatch,
                                                                                  pickled_weights):
    import open_clip

    from wmoe_clip.data import weights

    reference, data = pickled_weights
    name = f"/rel/tiny-laion-{_sha(data)[:8]}.pt"
    server.files[name] = data
    monkeypatch.setattr(weights, "registry_source", lambda backbone: (server.base + name, _sha(data)[:8]))
    dest = tmp_path / "weights"
    out = download_weights(dest, backbone="ViT-B-16-plus-240")
    src = SOURCES["ViT-B-16-plus-240"]
    assert out == dest / src.file
    fresh = _tiny_clip()
    open_clip.load_checkpoint(fresh, str(out))
    for key, value in reference.items():
        assert torch.equal(fresh.state_dict()[key], value), key
    record = json.loads((dest / src.record).read_text())
    assert record["source_sha256"] == _sha(data) and record["tag"] == "laion400m_e31"
    n_requests = len(server.log)
    assert download_weights(dest, backbone="ViT-B-16-plus-240") == out
    assert len(server.log) == n_requests
    # The source changed after the first download: the hash recorded then refuses it.
    out.unlink()
    server.files[name] = data + b"x"
    with pytest.raises(WMoEError, match="sha256 mismatch"):
        download_weights(dest, backbone="ViT-B-16-plus-240")
    # A fresh folder knows only the prefix, which a different file fails.
    monkeypatch.setattr(weights, "registry_source", lambda backbone: (server.base + name, "0" * 8))
    with pytest.raises(WMoEError, match="publishes a hash starting 00000000"):
        download_weights(tmp_path / "other", backbone="ViT-B-16-plus-240")
    assert not (tmp_path / "other" / src.file).exists()
