"""No command writes over one of its own inputs, replaces what is not a regular file, or replaces a file
it did not write without --force; a rerun replaces its own earlier output. Every refusal is one line
before any work, and every file that existed is left as it was."""

from __future__ import annotations

import os
import shutil
import stat

import pytest
from PIL import Image

from robustness_util import assert_one_line_error, run_cli, tree


def _evaluate(checkpoint, prepared, *extra):
    return ["evaluate", "--checkpoint", checkpoint, "--target", "mvtec", "--data", prepared("mvtec"),
            "--no-tracking", "--quiet", *extra]


def _copy_model(trained, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(trained("btad"), folder)
    return folder / "model.pt"


def _refused(capsys, args, *roots):
    """Run ``args``; it must fail in one line and change nothing under ``roots``; returns the line."""
    before = [tree(r) for r in roots]
    rc, _, err = run_cli(capsys, *args)
    line = assert_one_line_error(err, rc)
    assert [tree(r) for r in roots] == before
    return line


@pytest.mark.parametrize("option", ["--out", "--figure"])
def test_evaluate_never_writes_over_its_checkpoint(option, trained, prepared, tmp_path, capsys):
    checkpoint = _copy_model(trained, tmp_path)
    other = {"--out": ["--figure", tmp_path / "f.png"], "--figure": ["--out", tmp_path / "e.json"]}[option]
    args = _evaluate(checkpoint, prepared, option, checkpoint, *other)
    line = _refused(capsys, args + ["--force"], tmp_path)
    assert f"{option} {checkpoint} is an input of this command" in line


def test_evaluate_never_writes_over_the_dataset_manifest(trained, prepared, tmp_path, capsys):
    meta = prepared("mvtec") / "meta.json"
    line = _refused(capsys, _evaluate(trained("btad") / "model.pt", prepared, "--out", meta, "--force"),
                    prepared("mvtec").parent)
    assert f"--out {meta} is" in line and "would destroy" in line


def test_the_figure_beside_the_json_is_not_replaced_silently(trained, prepared, tmp_path, capsys):
    photo = tmp_path / "x.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(photo)
    line = _refused(capsys, _evaluate(trained("btad") / "model.pt", prepared, "--out", tmp_path / "x.json"), tmp_path)
    assert f"--figure {photo} exists and is not a figure of wmoe-clip evaluate wmoe-clip wrote" in line
    assert "--force" in line
    rc, _, err = run_cli(capsys, *_evaluate(trained("btad") / "model.pt", prepared, "--out", tmp_path / "x.json",
                                            "--force"))
    assert rc == 0 and f"replacing {photo} (--force)" in err
    # The rerun replaces its own earlier outputs without being asked, a figure written before figures
    # carried the wmoe-clip mark too (its evaluation JSON names it).
    rc, _, err = run_cli(capsys, *_evaluate(trained("btad") / "model.pt", prepared, "--out", tmp_path / "x.json"))
    assert rc == 0 and "replacing" not in err
    with Image.open(photo) as figure:
        assert figure.info["Software"] == "wmoe-clip"
        figure.convert("RGB").save(photo)
    rc, _, err = run_cli(capsys, *_evaluate(trained("btad") / "model.pt", prepared, "--out", tmp_path / "x.json"))
    assert rc == 0 and "replacing" not in err


def _special(kind, path):
    if kind == "symlink":
        elsewhere = path.parent / "elsewhere.json"
        elsewhere.write_text("{}")
        path.symlink_to(elsewhere)
    elif kind == "fifo":
        os.mkfifo(path)
    else:  # a character device like /dev/full, where the system allows making one
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        except OSError:
            pytest.skip("cannot make a device node here")
    return path


@pytest.mark.parametrize("kind,what", [("symlink", "is a symbolic link"), ("fifo", "is a named pipe"),
                                       ("device", "is a character device")])
def test_what_is_not_a_regular_file_is_never_replaced(kind, what, trained, prepared, tmp_path, capsys):
    out = _special(kind, tmp_path / "e.json")
    line = _refused(capsys, _evaluate(trained("btad") / "model.pt", prepared, "--out", out, "--force"), tmp_path)
    assert f"--out {out} {what}" in line
    assert stat.S_IFMT(os.lstat(out).st_mode) != stat.S_IFREG


def test_import_checkpoint_never_writes_over_the_released_file(tmp_path, capsys):
    released = tmp_path / "epoch_15.pth"
    released.write_bytes(b"PK\x03\x04 the authors' weights")
    line = _refused(capsys, ["import-checkpoint", "--from", "anomalyclip", released, "--config", "tiny_anomalyclip",
                             "--out", released, "--force"], tmp_path)
    assert f"--out {released} is an input of this command" in line


def test_run_config_never_writes_over_its_base_or_overrides(tmp_path, capsys):
    base = tmp_path / "mine.yaml"
    base.write_text("method: wmoe_clip\n")
    params = tmp_path / "params.yaml"
    params.write_text("run_config:\n  set:\n    train.epochs: 2\n")
    for out in (base, params):
        line = _refused(capsys, ["run-config", base, "--overrides", f"{params}:run_config.set", "--out", out,
                                 "--force"], tmp_path)
        assert f"--out {out} is an input of this command" in line


def test_run_config_replaces_its_own_output_and_asks_before_anything_else(tmp_path, capsys):
    out = tmp_path / "run.yaml"
    assert run_cli(capsys, "run-config", "tiny", "--out", out)[0] == 0
    assert run_cli(capsys, "run-config", "tiny", "--set", "train.epochs=2", "--out", out)[0] == 0
    assert "epochs: 2" in out.read_text()
    notes = tmp_path / "notes.yaml"
    notes.write_text("my notes\n")
    line = _refused(capsys, ["run-config", "tiny", "--out", notes], tmp_path)
    assert "is not a resolved run config wmoe-clip wrote" in line


def test_train_does_not_replace_a_foreign_model_pt(prepared, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.pt").write_bytes(b"someone else's model")
    line = _refused(capsys, ["train", "--config", "tiny", "--source", "btad", "--data", prepared("btad"),
                             "--out", tmp_path / "out", "--no-tracking"], tmp_path)
    assert f"--out {tmp_path / 'out' / 'model.pt'} exists and is not a wmoe-clip checkpoint" in line


def test_predict_never_deletes_an_image_it_is_given(trained, tmp_path, capsys):
    heatmaps = tmp_path / "out" / "heatmaps"
    heatmaps.mkdir(parents=True)
    image = heatmaps / "0000_a.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(image)
    line = _refused(capsys, ["predict", "--checkpoint", trained("btad") / "model.pt", image, "--out",
                             tmp_path / "out", "--force"], tmp_path)
    assert f"{image} lies in {heatmaps}, which predict replaces as a whole" in line


def test_predict_does_not_replace_foreign_scores(trained, tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(image)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "scores.csv").write_text("my spreadsheet\n")
    line = _refused(capsys, ["predict", "--checkpoint", trained("btad") / "model.pt", image, "--out",
                             tmp_path / "out"], tmp_path)
    assert "scores.csv exists and is not a predict scores wmoe-clip wrote" in line


def test_prepare_never_replaces_a_file_of_the_raw_data(prepared, tmp_path, capsys):
    raw = tmp_path / "raw"
    shutil.copytree(prepared("btad").parent / "raw", raw)
    (raw / "meta.json").write_text('{"my": "annotations"}')
    line = _refused(capsys, ["prepare", "btad", "--raw", raw, "--out", raw, "--force"], tmp_path)
    assert f"--out {raw / 'meta.json'} is a file of the input folder {raw}" in line


def test_report_never_writes_over_its_paper_file_or_a_foreign_page(evaluated, tmp_path, capsys):
    results = evaluated("btad", "mvtec").parents[4]
    paper = tmp_path / "index.html"
    shutil.copy("config/paper_results.yaml", paper)
    line = _refused(capsys, ["report", "--results", results, "--paper", paper, "--out", tmp_path, "--force"],
                    tmp_path, results)
    assert f"--out {paper} is an input of this command" in line
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<p>my homepage</p>")
    line = _refused(capsys, ["report", "--results", results, "--out", tmp_path / "site"], tmp_path, results)
    assert "is not a report page wmoe-clip wrote" in line
