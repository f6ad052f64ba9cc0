"""The zero-shot guard holds for a checkpoint copied away from its run record: the checkpoint records
its training dataset and the sha256 of that dataset's prepared meta.json."""

from __future__ import annotations

import hashlib
import json
import shutil

import torch

from robustness_util import assert_one_line_error, run_cli, tree


def _copy_alone(trained, tmp_path):
    """The mvtec-trained checkpoint copied into a folder of its own, without its run.json."""
    copy = tmp_path / "copied" / "model.pt"
    copy.parent.mkdir()
    shutil.copy(trained("mvtec") / "model.pt", copy)
    return copy


def test_a_copied_checkpoint_is_refused_on_its_own_training_data(trained, prepared, tmp_path, capsys):
    checkpoint = _copy_alone(trained, tmp_path)
    data = prepared("mvtec")
    before = tree(data.parent), tree(tmp_path)
    rc, _, err = run_cli(capsys, "evaluate", "--checkpoint", checkpoint, "--target", "mvtec", "--data", data,
                         "--out", tmp_path / "eval.json", "--no-tracking", "--quiet")
    line = assert_one_line_error(err, rc)
    assert "trained on 'mvtec'" in line and "would not be zero-shot" in line and "--allow-same-source" in line
    assert (tree(data.parent), tree(tmp_path)) == before

    rc, stdout, _ = run_cli(capsys, "evaluate", "--checkpoint", checkpoint, "--target", "mvtec", "--data", data,
                            "--out", tmp_path / "eval.json", "--no-tracking", "--quiet", "--allow-same-source")
    assert rc == 0 and stdout.rstrip().endswith("(not zero-shot)")
    doc = json.loads((tmp_path / "eval.json").read_text())
    assert doc["zero_shot"] is False and doc["source"] == "mvtec"


def test_the_checkpoint_records_its_training_data(trained, prepared):
    payload = torch.load(trained("mvtec") / "model.pt", weights_only=True)
    meta_sha = hashlib.sha256((prepared("mvtec") / "meta.json").read_bytes()).hexdigest()
    assert payload["source"] == {"dataset": "mvtec", "data_meta_sha256": meta_sha}


def test_a_source_given_against_the_checkpoints_record_is_refused(trained, prepared, tmp_path, capsys):
    checkpoint = _copy_alone(trained, tmp_path)
    rc, _, err = run_cli(capsys, "evaluate", "--checkpoint", checkpoint, "--source", "btad", "--target", "mvtec",
                         "--data", prepared("mvtec"), "--out", tmp_path / "eval.json", "--no-tracking", "--quiet")
    line = assert_one_line_error(err, rc)
    assert "--source says" in line and "records 'mvtec'" in line
    assert not (tmp_path / "eval.json").exists()


def test_an_older_checkpoint_without_a_record_has_an_unknown_source_as_before(trained, prepared, tmp_path, capsys):
    payload = torch.load(trained("mvtec") / "model.pt", weights_only=True)
    del payload["source"]
    old = tmp_path / "old" / "model.pt"
    old.parent.mkdir()
    torch.save(payload, old)
    rc, _, err = run_cli(capsys, "evaluate", "--checkpoint", old, "--target", "mvtec", "--data", prepared("mvtec"),
                         "--out", tmp_path / "eval.json", "--no-tracking", "--quiet")
    assert rc == 0, err
    assert json.loads((tmp_path / "eval.json").read_text())["zero_shot"] is None
