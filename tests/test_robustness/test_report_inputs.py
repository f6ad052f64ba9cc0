"""report: no table from nothing, no wrong number rendered as is."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from robustness_util import assert_one_line_error, run_cli, tree


@pytest.fixture
def results_dir(evaluated, trained, tmp_path):
    """A results folder holding one evaluation of the tiny model and its training, in the workflow's layout."""
    root = tmp_path / "results"
    path = root / "eval" / "btad" / "mvtec" / "full" / "seed0.json"
    path.parent.mkdir(parents=True)
    shutil.copy(evaluated("btad", "mvtec"), path)
    train_dir = root / "train" / "btad" / "full" / "seed0"
    train_dir.mkdir(parents=True)
    for name in ("history.json", "run.json"):
        shutil.copy(trained("btad") / name, train_dir / name)
    return root


def _report(capsys, results, out, *flags):
    return run_cli(capsys, "report", "--results", results, "--out", out, *flags)


@pytest.mark.parametrize("content", ["empty", "foreign"])
def test_an_empty_or_foreign_results_folder_is_refused(tmp_path, capsys, content):
    folder = tmp_path / "folder"
    folder.mkdir()
    if content == "foreign":
        (folder / "photos").mkdir()
        (folder / "scores.json").write_text("{}")
        (folder / "photos" / "seed0.json").write_text("{}")
    before = tree(tmp_path)
    rc, _, err = _report(capsys, folder, tmp_path / "report")
    line = assert_one_line_error(err, rc)
    holds = "it is empty" if content == "empty" else "it holds photos, scores.json"
    assert f"results folder {folder} holds no evaluation ({holds}); expected files {folder}/eval/<source>/<target>/" \
           "<run>/seed<seed>.json as the workflow writes them" in line
    assert tree(tmp_path) == before


def test_a_mean_that_disagrees_with_its_classes_is_refused(results_dir, tmp_path, capsys):
    path = next(results_dir.glob("eval/*/*/*/seed0.json"))
    doc = json.loads(path.read_text())
    true_mean = doc["mean"]["image"]["auroc"]["value"]
    doc["mean"]["image"]["auroc"]["value"] = round(min(1.0, true_mean + 0.25), 6)
    path.write_text(json.dumps(doc))
    rc, _, err = _report(capsys, results_dir, tmp_path / "report")
    line = assert_one_line_error(err, rc)
    n = doc["mean"]["image"]["auroc"]["n_classes"]
    assert (f"{path}: mean/image/auroc is {doc['mean']['image']['auroc']['value']} over {n} classes, but the "
            f"per-class values give {true_mean} over {n}") in line
    assert not (tmp_path / "report").exists()


def test_a_nan_is_refused(results_dir, tmp_path, capsys):
    path = next(results_dir.glob("eval/*/*/*/seed0.json"))
    doc = json.loads(path.read_text())
    cls = next(iter(doc["per_class"]))
    doc["per_class"][cls]["image"]["auroc"] = math.nan
    path.write_text(json.dumps(doc))  # json writes NaN, and Python's json reads it back by default
    rc, _, err = _report(capsys, results_dir, tmp_path / "report")
    assert f"{path}: not valid JSON (NaN is not a number a result may hold)" in assert_one_line_error(err, rc)
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("flags,message", [
    (["--resamples", "0"], "--resamples must be at least 1 (bootstrap resamples of the image-AUROC CIs), got 0"),
    (["--resamples", "-5"], "--resamples must be at least 1"),
    (["--seed", "-1"], "--seed must be 0 or more (seed of the bootstrap), got -1"),
])
def test_report_flags_are_validated(results_dir, tmp_path, capsys, flags, message):
    rc, _, err = _report(capsys, results_dir, tmp_path / "report", *flags)
    assert message in assert_one_line_error(err, rc)
    assert not (tmp_path / "report").exists()


def _mark_real(results, trainings_too: bool) -> None:
    for path in results.glob("eval/*/*/*/seed*.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "synthetic": False}))
    if trainings_too:
        for path in results.glob("train/*/*/seed*/run.json"):
            path.write_text(json.dumps({**json.loads(path.read_text()), "synthetic": False}))


@pytest.mark.parametrize("real,data_row", [
    ("all", "the real datasets"),
    ("evaluations", "mixed: synthetic stand-ins (wmoe-clip synth) for btad, real data elsewhere"),
    ("none", "synthetic stand-ins (wmoe-clip synth)"),
])
def test_real_datasets_are_claimed_only_when_true(results_dir, tmp_path, capsys, real, data_row):
    if real != "none":
        _mark_real(results_dir, trainings_too=real == "all")
    assert _report(capsys, results_dir, tmp_path / "report", "--resamples", "20")[0] == 0
    html = (tmp_path / "report" / "index.html").read_text()
    assert f"<td><strong>Data</strong></td><td>{data_row}</td>" in html
    assert ("Synthetic data." in html) == (real != "all")
