"""Evaluation is zero-shot and tied to its checkpoint; training state and manifests are checked
before they are used."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import pytest

from robustness_util import assert_one_line_error, run_cli, tree
from wmoe_clip.config import load_config
from wmoe_clip.engine.train import apply_overrides, train


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -------------------------------------------------------------------------------------- 9. evaluate


def test_train_records_the_sha256_of_the_checkpoint_it_wrote(trained):
    run = json.loads((trained("btad") / "run.json").read_text())
    assert run["model_sha256"] == _sha(trained("btad") / "model.pt")


def test_the_run_record_of_another_training_is_refused(trained, prepared, tmp_path, capsys):
    checkpoint, other = trained("mvtec") / "model.pt", trained("btad") / "run.json"
    rc, _, err = run_cli(capsys, "evaluate", "--checkpoint", checkpoint, "--train-run", other, "--target", "visa",
                         "--data", prepared("visa"), "--out", tmp_path / "eval.json", "--no-tracking")
    line = assert_one_line_error(err, rc)
    assert (f"{other} belongs to another checkpoint: it records model sha256 {_sha(other.parent / 'model.pt')[:12]}…, "
            f"but {checkpoint} has {_sha(checkpoint)[:12]}…; give the run.json written by the training of this "
            "checkpoint") in line
    assert list(tmp_path.iterdir()) == []


def test_a_run_record_that_cannot_be_matched_is_refused(trained, prepared, tmp_path, capsys):
    legacy = json.loads((trained("btad") / "run.json").read_text())
    del legacy["model_sha256"]
    (tmp_path / "run.json").write_text(json.dumps(legacy))
    rc, _, err = run_cli(capsys, "evaluate", "--checkpoint", trained("mvtec") / "model.pt", "--train-run",
                         tmp_path / "run.json", "--target", "visa", "--data", prepared("visa"),
                         "--out", tmp_path / "eval.json", "--no-tracking")
    assert "records no model_sha256, so it cannot be matched to" in assert_one_line_error(err, rc)


def test_a_model_trained_on_the_target_is_refused_or_marked_not_zero_shot(trained, prepared, evaluated, tmp_path,
                                                                          capsys):
    checkpoint = trained("mvtec") / "model.pt"
    results = tmp_path / "results"
    out = results / "eval" / "mvtec" / "mvtec" / "full" / "seed0.json"
    args = ["evaluate", "--checkpoint", checkpoint, "--target", "mvtec", "--data", prepared("mvtec"),
            "--out", out, "--no-tracking", "--quiet"]
    rc, _, err = run_cli(capsys, *args)
    line = assert_one_line_error(err, rc)
    assert ("the checkpoint was trained on 'mvtec' (per its run.json), the target itself: this evaluation would "
            "not be zero-shot") in line and "--allow-same-source" in line
    assert not results.exists()

    rc, stdout, _ = run_cli(capsys, *args, "--allow-same-source")
    assert rc == 0 and "mvtec -> mvtec (full, seed 0)" in stdout and stdout.rstrip().endswith("(not zero-shot)")
    doc = json.loads(out.read_text())
    assert doc["zero_shot"] is False and doc["source"] == doc["target"] == "mvtec"

    # The report shows that cell as not zero-shot, never as a plain Table 1 number.
    zero_shot = results / "eval" / "btad" / "mvtec" / "full" / "seed0.json"
    zero_shot.parent.mkdir(parents=True)
    shutil.copy(evaluated("btad", "mvtec"), zero_shot)
    assert run_cli(capsys, "report", "--results", results, "--out", tmp_path / "report", "--resamples", "20")[0] == 0
    tex = (tmp_path / "report" / "table1.tex").read_text()
    ours = f"{100 * doc['mean']['image']['auroc']['value']:.1f}"
    assert f"& {ours} \\dag{{}} & n/a &" in tex
    assert "not zero-shot: the model was trained on the target dataset itself" in tex
    html = (tmp_path / "report" / "index.html").read_text()
    cell = '<td class="num[^"]*">{}</td>'  # the classes place the cell in its method's column group
    assert re.search(cell.format(f"{re.escape(ours)} †") + cell.format("n/a"), html)
    plain = f"{100 * json.loads(zero_shot.read_text())['mean']['image']['auroc']['value']:.1f}"
    assert re.search(cell.format(re.escape(plain)) + cell.format("[−+][0-9.]+"), html)  # the zero-shot row is plain, with a Δ


# --------------------------------------------------------------------------------- minor: inputs


def test_a_truncated_training_state_gives_a_message_and_a_restart(prepared, tmp_path, capsys):
    out = tmp_path / "train"
    cfg = apply_overrides(load_config("tiny"), "base", epochs=2)

    def interrupt(epoch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, "btad", prepared("btad"), out, on_epoch_end=interrupt, progress=False)
    (state,) = (out / "state").glob("*/epoch-0001.pt")
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # a copy cut short
    args = ["train", "--config", "tiny", "--source", "btad", "--data", prepared("btad"), "--variant", "base",
            "--epochs", "2", "--out", out, "--no-tracking", "--quiet"]
    rc, _, err = run_cli(capsys, *args)
    line = assert_one_line_error(err, rc)
    assert f"training state {state} is truncated or corrupt" in line
    assert f"rerun with --restart to start again from epoch 0 (its files in {state.parent} are then replaced)" in line
    assert not (out / "model.pt").exists()
    assert run_cli(capsys, *args, "--restart")[0] == 0
    assert [e["epoch"] for e in json.loads((out / "history.json").read_text())] == [1, 2]
    assert json.loads((out / "run.json").read_text())["model_sha256"] == _sha(out / "model.pt")


def test_an_anomalous_record_without_a_mask_is_refused_at_load(prepared, tmp_path, capsys):
    base = tmp_path / "mvtec"
    shutil.copytree(prepared("mvtec").parent, base, symlinks=True)
    meta_path = base / "prepared" / "meta.json"
    meta = json.loads(meta_path.read_text())
    record = next(r for r in meta["test"]["bottle"] if r["anomaly"])
    record["mask_path"] = ""
    meta_path.write_text(json.dumps(meta))
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, "train", "--config", "tiny", "--source", "mvtec", "--data", base / "prepared",
                         "--variant", "base", "--epochs", "1", "--out", tmp_path / "train", "--no-tracking")
    line = assert_one_line_error(err, rc)
    assert (f"{meta_path}: 1 anomalous test image(s) of 'mvtec' have no mask (mask_path \"\"), e.g. "
            f"{record['img_path']}; 'mvtec' has pixel metrics") in line
    assert tree(tmp_path) == before


def test_a_corrupt_image_read_by_a_loader_worker_gives_one_line(tmp_path, capsys):
    raw, prepared_dir = tmp_path / "raw", tmp_path / "prepared"
    assert run_cli(capsys, "synth", "btad", "--out", raw, "--size", "2")[0] == 0
    assert run_cli(capsys, "prepare", "btad", "--raw", raw, "--out", prepared_dir)[0] == 0
    victim = next(raw.rglob("test/ko/*.png"))
    victim.write_bytes(b"damaged after prepare")
    config = tmp_path / "workers.yaml"
    assert run_cli(capsys, "run-config", "tiny", "--set", "train.num_workers=1", "--out", config)[0] == 0
    rc, _, err = run_cli(capsys, "train", "--config", config, "--source", "btad", "--data", prepared_dir,
                         "--variant", "base", "--epochs", "1", "--out", tmp_path / "train", "--no-tracking",
                         "--quiet")
    line = assert_one_line_error(err, rc)
    assert line.startswith("wmoe-clip train: error: dataset 'btad', class ")
    assert f"cannot decode image {victim}" in line
