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


def test_score_parts_are_the_aurocs_of_s_g_and_of_the_smoothed_map_maximum(evaluation, trained, make_prepared):
    import torch

    from wmoe_clip.data.dataset import AnomalyDataset
    from wmoe_clip.engine.smoothing import gaussian_smooth
    from wmoe_clip.model import load_checkpoint

    doc, _ = evaluation
    model = load_checkpoint(trained[1] / "model.pt")
    cfg = model.cfg
    dataset = AnomalyDataset(make_prepared("mvtec", 4), "test", cfg.model.image_size)
    parts = doc["score_parts"]
    assert list(parts) == ["global_score", "map_max"]
    means = {"global_score": [], "map_max": []}
    for cls in dataset.class_names:
        idx = dataset.class_indices(cls)
        images = torch.stack([dataset[i]["image"] for i in idx])
        labels = [dataset.records[i]["anomaly"] for i in idx]
        with torch.no_grad():
            out = model(images)
        s_g = out.global_score.numpy()
        map_max = gaussian_smooth(out.anomaly_map, cfg.eval.sigma).flatten(1).amax(dim=1).numpy()
        # The parts are the parts of the recorded image score.
        np.testing.assert_allclose(cfg.model.wmoe_clip.alpha * s_g + (1 - cfg.model.wmoe_clip.alpha) * map_max,
                                   doc["image_scores"][cls]["scores"], atol=1e-6)
        for name, scores in (("global_score", s_g), ("map_max", map_max)):
            expected = roc_auc_score(labels, scores)
            assert parts[name]["per_class"][cls]["auroc"] == pytest.approx(expected, abs=1e-6), (name, cls)
            means[name].append(expected)
    for name, values in means.items():
        assert parts[name]["mean"]["auroc"] == {"value": pytest.approx(np.mean(values), abs=1e-6), "n_classes": 15}


def test_figure_is_written_beside_the_json(evaluation):
    doc, path = evaluation
    figure = path.parent / doc["figure"]
    assert doc["figure"] == "seed0.png" and figure.is_file()
    with Image.open(figure) as img:
        assert img.format == "PNG" and img.size[0] > img.size[1] > 200


def test_eval_run_is_linked_to_its_training_run(evaluation, trained):
    doc, _ = evaluation
    run, out = trained
    client = MlflowClient(default_tracking_uri())
    eval_run = client.get_run(doc["mlflow_run_id"])
    train_run = client.get_run(run["mlflow_run_id"])
    assert eval_run.data.tags["mlflow.parentRunId"] == train_run.info.run_id == doc["train_run_id"]
    assert eval_run.info.status == train_run.info.status == "FINISHED"
    assert eval_run.data.tags["target"] == "mvtec" and train_run.data.tags["source"] == "visa"
    # Provenance tags: code version, device, data counts.
    for r, counts in ((train_run, run["counts"]), (eval_run, doc["counts"])):
        tags = r.data.tags
        assert tags["mlflow.source.git.commit"] == (doc["software"]["git_commit"] or "")
        assert tags["git_dirty"] == str(doc["software"]["git_dirty"])
        assert tags["device"].startswith("cpu")
        assert {f"data.{k}": str(v) for k, v in counts.items()}.items() <= tags.items()
    # Parameters: the whole resolved config, one parameter per leaf.
    leaves = {}

    def flatten(d, prefix=""):
        for k, v in d.items():
            flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else leaves.__setitem__(prefix + k, str(v))

    flatten(doc["config"])
    assert len(leaves) > 40
    assert train_run.data.params == leaves == eval_run.data.params
    # Metrics: per class, means, per-epoch loss terms and expert usage.
    assert eval_run.data.metrics["mean.image.auroc"] == pytest.approx(doc["mean"]["image"]["auroc"]["value"])
    for part in ("global_score", "map_max"):
        assert eval_run.data.metrics[f"score_parts.{part}.auroc"] == pytest.approx(
            doc["score_parts"][part]["mean"]["auroc"]["value"])
    for cls, result in doc["per_class"].items():
        for level in ("image", "pixel"):
            for metric, value in result[level].items():
                if value is not None:
                    assert eval_run.data.metrics[f"class.{cls}.{level}.{metric}"] == pytest.approx(value)
    history = json.loads((out / "history.json").read_text())
    for name in ("loss.total", "loss.kl", "selected_share.0", "mean_router_prob.7", "diagnostics.cos_text",
                 "diagnostics.prompt_shift_norm", "diagnostics.router_entropy", "lr"):
        steps = client.get_metric_history(train_run.info.run_id, name)
        assert [m.step for m in steps] == list(range(1, run["epochs"] + 1)), name
    shares = client.get_metric_history(train_run.info.run_id, "selected_share.3")
    assert [m.value for m in shares] == pytest.approx([h["expert_usage"]["selected_share"][3] for h in history])
    assert {a.path for a in client.list_artifacts(eval_run.info.run_id)} == {"seed0.json", "seed0.png"}
    assert {a.path for a in client.list_artifacts(train_run.info.run_id)} == {"history.json", "run.json"}


def test_evaluation_holds_the_maps_of_one_class_at_a_time(trained, make_prepared, tmp_path, monkeypatch):
    from wmoe_clip.metrics import ClassMetricAccumulator

    held, finalize = [], ClassMetricAccumulator.finalize_class

    def recording(self, cls):
        # The map-holding accumulator (the image-only ones of score_parts hold scores alone); later
        # calls only return the stored result.
        if self.pixel and self._classes[cls].result is None:
            held.append((self.nbytes, sum(s.maps is not None for s in self._classes.values())))
        return finalize(self, cls)

    monkeypatch.setattr(ClassMetricAccumulator, "finalize_class", recording)
    _, out = trained
    doc = evaluate(out / "model.pt", "mvtec", make_prepared("mvtec", 4), tmp_path / "e.json", progress=False)
    size = doc["config"]["model"]["image_size"]
    per_class_buffer = 8 * size * size * (4 + 1)  # capacity ≥ 8 images: float32 map and bool mask each
    assert len(held) == doc["counts"]["n_classes"] == 15
    assert all(open_classes == 1 for _, open_classes in held)
    assert max(nbytes for nbytes, _ in held) <= per_class_buffer + 15 * 8 * 9  # + kept labels and scores


def test_image_only_target_has_no_pixel_metrics(trained, make_prepared, tmp_path):
    _, out = trained
    rc = main(["evaluate", "--checkpoint", str(out / "model.pt"), "--target", "headct",
               "--data", str(make_prepared("headct", 4)), "--out", str(tmp_path / "h.json"), "--no-tracking", "--quiet"])
    assert rc == 0
    doc = json.loads((tmp_path / "h.json").read_text())
    assert set(doc["mean"]) == {"image"} and all("pixel" not in r for r in doc["per_class"].values())
    assert set(doc["score_parts"]["map_max"]["per_class"]) == set(doc["per_class"])
    assert doc["mlflow_run_id"] is None


def test_pixel_only_target_has_no_score_parts(trained, make_prepared, tmp_path):
    _, out = trained
    doc = evaluate(out / "model.pt", "isic", make_prepared("isic", 4), tmp_path / "i.json", progress=False)
    assert set(doc["mean"]) == {"pixel"} and "score_parts" not in doc


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
