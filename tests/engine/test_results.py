import copy
import hashlib
import json
from importlib import resources

import jsonschema
import pytest

from wmoe_clip.engine.results import build_eval, load_eval, write_eval
from wmoe_clip.errors import WMoEError

SCHEMA = json.loads(resources.files("wmoe_clip").joinpath("schemas/eval.schema.json").read_text())


def _doc(tmp_path, pixel=True):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    per_class = {
        "a": {"n_images": 3, "n_normal": 1, "n_anomalous": 2, "image": {"auroc": 1.0, "ap": 1.0, "f1_max": 1.0}},
        "b": {"n_images": 2, "n_normal": 0, "n_anomalous": 2, "image": {"auroc": None, "ap": None, "f1_max": 1.0}},
    }
    mean = {"image": {"auroc": {"value": 1.0, "n_classes": 1}, "ap": {"value": 1.0, "n_classes": 1},
                      "f1_max": {"value": 1.0, "n_classes": 2}}}
    if pixel:
        px = {"auroc": 0.9, "ap": 0.5, "f1_max": 0.5, "aupro": 0.7, "aupro_anomalyclip": 0.7}
        for r in per_class.values():
            r["pixel"] = dict(px)
        mean["pixel"] = {k: {"value": v, "n_classes": 2} for k, v in px.items()}
    return build_eval(
        source="visa", target="mvtec", method="wmoe_clip", variant="full", seed=0, synthetic=True,
        dataset={"key": "mvtec", "display_name": "MVTec-AD", "domain": "industrial",
                 "image_metrics": True, "pixel_metrics": pixel},
        per_class=per_class, mean=mean,
        image_scores={"a": {"labels": [0, 1, 1], "scores": [0.1, 0.8, 0.9]}, "b": {"labels": [1, 1], "scores": [0.5, 0.6]}},
        checkpoint=ckpt, config={"model": {}, "loss": {}, "train": {}, "eval": {}, "data": {}},
        train_run_id=None, mlflow_run_id=None,
        software={"wmoe_clip": "0.1.0", "git_commit": None, "git_dirty": None, "torch": "2"},
        timings={"inference_s": 1.0, "images_per_s": 5.0, "metrics_s": 0.1}, figure="seed0.png",
    )


def test_built_document_follows_the_published_schema_and_round_trips(tmp_path):
    doc = _doc(tmp_path)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert doc["counts"] == {"n_images": 5, "n_normal": 1, "n_anomalous": 4, "n_classes": 2}
    assert doc["checkpoint"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    write_eval(tmp_path / "seed0.json", doc)
    assert load_eval(tmp_path / "seed0.json") == doc


def test_image_only_dataset_has_no_pixel_level(tmp_path):
    doc = _doc(tmp_path, pixel=False)
    write_eval(tmp_path / "x.json", doc)
    bad = copy.deepcopy(doc)
    bad["per_class"]["a"]["pixel"] = {"auroc": 0.5, "ap": 0.5, "f1_max": 0.5, "aupro": 0.5, "aupro_anomalyclip": 0.5}
    with pytest.raises(WMoEError, match="levels differ"):
        write_eval(tmp_path / "y.json", bad)
    assert not (tmp_path / "y.json").exists()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("per_class", "a", "image", "auroc"), 1.5, "greater than the maximum"),
        (("format_version",), 2, "format_version"),
        (("counts", "n_images"), 7, "sum over classes"),
        (("per_class", "a", "n_normal"), 2, "n_normal"),
    ],
)
def test_invalid_documents_are_refused_naming_the_place(tmp_path, path, value, message):
    doc = _doc(tmp_path)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(WMoEError, match=message):
        write_eval(tmp_path / "bad.json", doc)


def test_score_parts_are_optional_and_must_cover_the_classes(tmp_path):
    old = _doc(tmp_path)  # as written before score_parts existed
    write_eval(tmp_path / "old.json", old)
    part = {"per_class": {"a": {"auroc": 1.0, "ap": 1.0, "f1_max": 1.0}, "b": {"auroc": None, "ap": None, "f1_max": 1.0}},
            "mean": {"auroc": {"value": 1.0, "n_classes": 1}}}
    new = {**old, "score_parts": {"global_score": part, "map_max": copy.deepcopy(part)}}
    jsonschema.Draft202012Validator(SCHEMA).validate(new)
    write_eval(tmp_path / "new.json", new)
    assert load_eval(tmp_path / "new.json")["score_parts"]["map_max"] == part
    del new["score_parts"]["map_max"]["per_class"]["b"]
    with pytest.raises(WMoEError, match="score_parts/map_max: needs image metrics and the classes of per_class"):
        write_eval(tmp_path / "bad.json", new)
    with pytest.raises(WMoEError, match="score_parts"):
        write_eval(tmp_path / "bad.json", {**old, "score_parts": {"global_score": part}})


def test_a_mean_that_counts_undefined_classes_as_zero_is_checked_as_such(tmp_path):
    """eval.undefined_metric zero: class b's undefined AUROC counts as 0, so the mean is (1 + 0) / 2."""
    doc = _doc(tmp_path, pixel=False)
    doc["mean"]["image"]["auroc"] = {"value": 0.5, "n_classes": 2, "n_zero": 1}
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    write_eval(tmp_path / "zero.json", doc)
    doc["mean"]["image"]["auroc"] = {"value": 1.0, "n_classes": 2, "n_zero": 1}
    with pytest.raises(WMoEError, match="mean/image/auroc is 1.0 over 2 classes, but the per-class values give 0.5"):
        write_eval(tmp_path / "bad.json", doc)
