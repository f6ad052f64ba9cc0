"""Outputs that cannot be written fail at once, in one line, and cost nothing.

Every command tests its destination before it reads data or builds a model: a read-only folder, a
read-only file system or a full disk is reported in the first second with the path and what to do,
not after an epoch or after all inference. An OS error that strikes later still gives one line.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest
from PIL import Image

from robustness_util import assert_one_line_error, run_cli, tree

KINDS = {
    "permission": ("Permission denied", "Operation not permitted"),
    "read-only file system": ("Read-only file system (EROFS); the file system is read-only",),
    "full disk": ("No space left on device (ENOSPC); the disk is full",),
}
COMMANDS = ["train", "evaluate", "evaluate --figure", "predict", "prepare", "report", "download",
            "download-weights", "synth", "run-config"]


@pytest.fixture
def no_compute(monkeypatch):
    """Reading a dataset or building/loading a model fails the test: the output check must come first."""
    import wmoe_clip.data.dataset
    import wmoe_clip.model

    def forbidden(*args, **kwargs):
        pytest.fail("data were read or a model was built before the output was checked")

    for module, name in ((wmoe_clip.model, "build_model"), (wmoe_clip.model, "load_checkpoint"),
                         (wmoe_clip.data.dataset, "AnomalyDataset")):
        monkeypatch.setattr(module, name, forbidden)


def _args(command: str, dest, prepared, trained, evaluated, tmp_path) -> list:
    """A valid command line of ``command`` writing to ``dest`` (its inputs are made first)."""
    checkpoint, results = trained("btad") / "model.pt", evaluated("btad", "mvtec").parents[4]
    btad, mvtec = prepared("btad"), prepared("mvtec")
    image = tmp_path / "photo.png"
    Image.new("RGB", (32, 24), (90, 120, 40)).save(image)
    return {
        "train": ["train", "--config", "tiny", "--source", "btad", "--data", btad, "--variant", "base",
                  "--out", dest, "--no-tracking"],
        "evaluate": ["evaluate", "--checkpoint", checkpoint, "--target", "mvtec", "--data", mvtec,
                     "--out", dest / "e.json", "--no-tracking"],
        "evaluate --figure": ["evaluate", "--checkpoint", checkpoint, "--target", "mvtec", "--data", mvtec,
                              "--out", tmp_path / "ok" / "e.json", "--figure", dest / "e.png", "--no-tracking"],
        "predict": ["predict", "--checkpoint", checkpoint, image, "--out", dest],
        "prepare": ["prepare", "btad", "--raw", btad.parent / "raw", "--out", dest],
        "report": ["report", "--results", results, "--out", dest],
        "download": ["download", "mvtec", "--dest", dest, "--url-base", "http://127.0.0.1:9", "--retries", "0"],
        "download-weights": ["download-weights", "--dest", dest, "--url", "http://127.0.0.1:9/w.pt",
                             "--sha256", "0" * 64, "--retries", "0"],
        "synth": ["synth", "btad", "--out", dest, "--size", "2"],
        "run-config": ["run-config", "tiny", "--out", dest / "run_config.yaml"],
    }[command]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("command", COMMANDS)
def test_an_unwritable_destination_fails_first_in_one_line(command, kind, unwritable_dirs, prepared, trained,
                                                           evaluated, tmp_path, capsys, request):
    locked = unwritable_dirs(kind)
    args = _args(command, locked / "out", prepared, trained, evaluated, tmp_path)
    request.getfixturevalue("no_compute")  # only now: making the inputs above reads data and builds models
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, *args)
    line = assert_one_line_error(err, rc)
    assert "is not writable: " in line and str(locked) in line, line
    assert any(reason in line for reason in KINDS[kind]), line
    assert tree(tmp_path) == before


def test_an_output_path_below_a_file_is_named(tmp_path, capsys, prepared):
    (tmp_path / "results").write_text("a file, not a folder")
    rc, _, err = run_cli(capsys, "train", "--config", "tiny", "--source", "btad", "--data", prepared("btad"),
                         "--variant", "base", "--out", tmp_path / "results" / "train", "--no-tracking")
    line = assert_one_line_error(err, rc)
    assert f"--out {tmp_path / 'results' / 'train'} cannot be created: {tmp_path / 'results'} is a file" in line


def test_a_disk_that_fills_up_midway_gives_one_line_and_keeps_the_previous_outputs(small_disk, trained, tmp_path,
                                                                                     capsys):
    checkpoint = trained("btad") / "model.pt"
    small = tmp_path / "small.png"
    Image.new("RGB", (24, 24), (200, 30, 30)).save(small)
    out = small_disk / "pred"
    assert run_cli(capsys, "predict", "--checkpoint", checkpoint, small, "--out", out)[0] == 0
    before = tree(small_disk)
    # Noise does not compress: its heatmap alone is larger than the disk.
    noisy = tmp_path / "noisy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)).save(noisy)
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", checkpoint, noisy, "--out", out)
    line = assert_one_line_error(err, rc)
    assert "No space left on device (ENOSPC); the disk is full: free some space or choose another location" in line
    assert tree(small_disk) == before


@pytest.mark.parametrize("code,advice", [
    (errno.EROFS, "the file system is read-only: choose a writable location"),
    (errno.EACCES, "fix the permissions or choose another location"),
    (errno.ENOSPC, "the disk is full: free some space or choose another location"),
])
def test_every_command_turns_an_os_error_into_one_line(monkeypatch, capsys, code, advice):
    import wmoe_clip.cli
    import wmoe_clip.cli.report

    def fails(args):
        raise OSError(code, "simulated", "/data/results/x.json")

    parser = wmoe_clip.cli.build_parser()
    monkeypatch.setattr(wmoe_clip.cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["report"].set_defaults(func=fails)
    rc, _, err = run_cli(capsys, "report", "--results", "r", "--out", "o")
    line = assert_one_line_error(err, rc)
    assert line == f"wmoe-clip report: error: /data/results/x.json: simulated ({errno.errorcode[code]}); {advice}"
