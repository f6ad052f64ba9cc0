import json
from importlib import resources

import jsonschema
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from sklearn.metrics import roc_auc_score

from wmoe_clip.cli import main
from wmoe_clip.data.registry import get
from wmoe_clip.engine.evaluate import evaluate
from wmoe_clip.engine.figures import select_samples
from wmoe_clip.engine.tracking import Tracker, default_tracking_uri

SCHEMA = json.loads(resources.files("wmoe_clip").joinpath("schemas/eval.schema.json").read_text())


@pytest.fixture(scope="module")
def evaluation(trained, make_prepared, tmp_path_factory):
    run, out = trained
    path = tmp_path_factory.mktemp("eval") / "visa" / "mvtec" / "full" / "seed0.json"
    doc = evaluate(out / "model.pt", "mvtec", make_prepared("mvtec", 4), path, tracker=Tracker(), progress=False)
    return doc, path


def test_model_from_one_synthetic_dataset_scores_above_chance_on_another(evaluation):
    doc, _ = evaluation
    assert doc["source"] == "visa" and doc["target"] == "mvtec" and doc["variant"] == "full"
    assert doc["mean"]["image"]["auroc"]["value"] > 0.65
    assert doc["mean"]["pixel"]["auroc"]["value"] > 0.65


def test_eval_json_validates_and_its_metrics_match_sklearn(evaluation):
    doc, path = evaluation
    on_disk = json.loads(path.read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(on_disk)
    spec = get("mvtec")
    assert list(on_disk["per_class"]) == list(spec.classes)
    aurocs = []
    for cls, scores in on_disk["image_scores"].items():
        expected = roc_auc_score(scores["labels"], scores["scores"])
        assert on_disk["per_class"][cls]["image"]["auroc"] == pytest.approx(expected, abs=1e-9)
        aurocs.append(expected)
    assert on_disk["mean"]["image"]["auroc"] == {"value": pytest.approx(np.mean(aurocs)), "n_classes": 15}
    assert on_disk["counts"] == {"n_images": 60, "n_normal": 30, "n_anomalous": 30, "n_classes": 15}
    assert on_disk["software"]["wmoe_clip"] == "0.1.0" and len(on_disk["checkpoint"]["sha256"]) == 64
    assert on_disk["timings"]["images_per_s"] > 0


def test_figure_is_written_beside_the_json(evaluation):
    doc, path = evaluation
    figure = path.parent / doc["figure"]
    assert doc["figure"] == "seed0.png" and figure.is_file()
    with Image.open(figure) as img:
        assert img.format == "PNG" and img.size[0] > img.size[1] > 200


def test_eval_run_is_linked_to_its_training_run(evaluation, trained):
    doc, _ = evaluation
    run, _ = trained
    client = MlflowClient(default_tracking_uri())
    eval_run = client.get_run(doc["mlflow_run_id"])
    train_run = client.get_run(run["mlflow_run_id"])
    assert eval_run.data.tags["mlflow.parentRunId"] == train_run.info.run_id == doc["train_run_id"]
    assert eval_run.data.tags["target"] == "mvtec" and "git_dirty" in train_run.data.tags
    assert eval_run.data.metrics["mean.image.auroc"] == pytest.approx(doc["mean"]["image"]["auroc"]["value"])
    assert "class.bottle.pixel.aupro" in eval_run.data.metrics
    assert train_run.data.params["model.backbone"] == "wmoe-tiny-quickgelu"
    history = client.get_metric_history(train_run.info.run_id, "loss.total")
    assert [m.step for m in history] == list(range(1, run["epochs"] + 1))
    artifacts = {a.path for a in client.list_artifacts(eval_run.info.run_id)}
    assert {"seed0.json", "seed0.png"} <= artifacts


def test_image_only_target_has_no_pixel_metrics(trained, make_prepared, tmp_path):
    _, out = trained
    rc = main(["evaluate", "--checkpoint", str(out / "model.pt"), "--target", "headct",
               "--data", str(make_prepared("headct", 4)), "--out", str(tmp_path / "h.json"), "--no-tracking", "--quiet"])
    assert rc == 0
    doc = json.loads((tmp_path / "h.json").read_text())
    assert set(doc["mean"]) == {"image"} and all("pixel" not in r for r in doc["per_class"].values())
    assert doc["mlflow_run_id"] is None


def test_synthetic_flag_comes_from_the_synth_marker(make_prepared, tmp_path):
    import shutil

    from wmoe_clip.data.meta import SYNTHETIC_MARKER, is_synthetic

    prepared = make_prepared("btad", 4)
    assert is_synthetic(prepared)
    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy / "prepared")
    meta = json.loads((copy / "prepared" / "meta.json").read_text())
    raw = (prepared / meta["root"]).resolve()
    shutil.copytree(raw, copy / "raw")
    (copy / "raw" / SYNTHETIC_MARKER).unlink()
    meta["root"] = "../raw"
    (copy / "prepared" / "meta.json").write_text(json.dumps(meta))
    assert not is_synthetic(copy / "prepared")


def test_figure_samples_cover_normal_and_anomalous_images_of_several_classes():
    records = [{"cls_name": c, "anomaly": a} for c in "abcdef" for a in (0, 0, 1, 1)]
    picks = select_samples(records, 8)
    assert len(picks) == len(set(picks)) == 8
    assert {records[i]["anomaly"] for i in picks} == {0, 1}
    assert len({records[i]["cls_name"] for i in picks}) == 4
