"""The baselines through the same engine: plain CLIP evaluated from its run config, AnomalyCLIP trained
or imported from the authors' checkpoint format, each evaluation written in the one JSON format."""

import hashlib
import json
from importlib import resources

import jsonschema
import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score

from tests.model.test_anomalyclip_checkpoint import their_state_dict
from wmoe_clip.cli import main
from wmoe_clip.config import load_config
from wmoe_clip.engine.evaluate import evaluate
from wmoe_clip.engine.train import apply_overrides, train
from wmoe_clip.model import build_model, load_checkpoint

SCHEMA = json.loads(resources.files("wmoe_clip").joinpath("schemas/eval.schema.json").read_text())


@pytest.fixture(scope="module")
def clip_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip.yaml"
    path.write_text(yaml.safe_dump(load_config("tiny").for_method("clip").to_dict()))
    return path


def check_scores_match_sklearn(doc):
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    for cls, scores in doc["image_scores"].items():
        assert doc["per_class"][cls]["image"]["auroc"] == pytest.approx(
            roc_auc_score(scores["labels"], scores["scores"]), abs=1e-9)


def test_clip_is_evaluated_from_its_run_config_as_source_none_seed0(clip_config, make_prepared, tmp_path):
    out = tmp_path / "eval" / "none" / "mvtec" / "clip" / "seed0.json"
    assert main(["evaluate", "--config", str(clip_config), "--target", "mvtec", "--data",
                 str(make_prepared("mvtec", 4)), "--out", str(out), "--no-tracking", "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert (doc["method"], doc["source"], doc["variant"], doc["seed"]) == ("clip", "none", "clip", 0)
    assert doc["zero_shot"] is True and doc["train_run_id"] is None
    assert doc["checkpoint"]["path"].endswith("clip.yaml")
    assert doc["checkpoint"]["sha256"] == hashlib.sha256(clip_config.read_bytes()).hexdigest()
    check_scores_match_sklearn(doc)
    # Its image score is s_g alone: the score part of s_g equals the image AUROC.
    assert doc["score_parts"]["global_score"]["mean"]["auroc"] == doc["mean"]["image"]["auroc"]


def test_winclip_is_evaluated_from_its_shipped_config_without_the_feature_cache(make_prepared, tmp_path, capsys):
    data = str(make_prepared("mvtec", 4))
    out = tmp_path / "eval" / "none" / "mvtec" / "winclip" / "seed0.json"
    assert main(["evaluate", "--config", "tiny_winclip", "--target", "mvtec", "--data", data, "--out", str(out),
                 "--no-tracking", "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert (doc["method"], doc["source"], doc["variant"], doc["seed"]) == ("winclip", "none", "winclip", 0)
    check_scores_match_sklearn(doc)
    # Zero-shot, its image score is the whole image's score alone.
    assert doc["score_parts"]["global_score"]["mean"]["auroc"] == doc["mean"]["image"]["auroc"]
    # The window embeddings are its own encoder's: the backbone's cache cannot serve it.
    code = main(["evaluate", "--config", "tiny_winclip", "--target", "mvtec", "--data", data, "--out",
                 str(tmp_path / "cached.json"), "--no-tracking", "--quiet", "--feature-cache"])
    assert code == 2 and "without the feature cache" in capsys.readouterr().err
    assert not (tmp_path / "cached.json").exists()


def test_a_method_that_trains_is_not_evaluated_from_a_run_config(make_prepared, tmp_path, capsys):
    code = main(["evaluate", "--config", "tiny", "--target", "mvtec", "--data", str(make_prepared("mvtec", 4)),
                 "--out", str(tmp_path / "e.json"), "--no-tracking", "--quiet"])
    assert code == 2 and "method wmoe_clip learns its parameters" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()


def test_training_options_are_refused_for_an_untrained_method(clip_config, make_prepared, tmp_path, capsys):
    code = main(["evaluate", "--config", str(clip_config), "--target", "mvtec", "--source", "visa",
                 "--data", str(make_prepared("mvtec", 4)), "--out", str(tmp_path / "e.json"), "--no-tracking"])
    assert code == 2 and "describe a training; a model given by --config" in capsys.readouterr().err


def test_anomalyclip_trains_and_evaluates_through_the_same_engine(make_prepared, tmp_path):
    cfg = apply_overrides(load_config("tiny_anomalyclip"), None, seed=0, epochs=1)
    run = train(cfg, "visa", make_prepared("visa", 4), tmp_path / "train", progress=False)
    assert run["method"] == "anomalyclip"
    out = tmp_path / "eval" / "visa" / "mvtec" / "anomalyclip" / "seed0.json"
    doc = evaluate(tmp_path / "train" / "model.pt", "mvtec", make_prepared("mvtec", 4), out, progress=False)
    assert (doc["method"], doc["source"], doc["variant"]) == ("anomalyclip", "visa", "anomalyclip")
    check_scores_match_sklearn(json.loads(out.read_text()))


def test_released_anomalyclip_checkpoint_imports_and_evaluates(make_prepared, tmp_path, capsys):
    torch.manual_seed(0)
    reference = build_model(load_config("tiny_anomalyclip"))
    state = their_state_dict(64, token_embedding=reference.backbone.clip.token_embedding, seed=3)
    theirs = tmp_path / "epoch_15.pth"
    torch.save({"prompt_learner": state}, theirs)

    ours = tmp_path / "model.pt"
    assert main(["import-checkpoint", "--from", "anomalyclip", str(theirs), "--config", "tiny_anomalyclip",
                 "--out", str(ours)]) == 0
    model = load_checkpoint(ours)
    assert model.cfg.method == "anomalyclip"
    assert torch.equal(model.prompts.context[0], state["ctx_pos"][0, 0])
    assert torch.equal(model.prompts.context[1], state["ctx_neg"][0, 0])

    out = tmp_path / "visa" / "mvtec" / "anomalyclip" / "seed0.json"
    assert main(["evaluate", "--checkpoint", str(ours), "--source", "visa", "--target", "mvtec", "--data",
                 str(make_prepared("mvtec", 4)), "--out", str(out), "--no-tracking", "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert doc["method"] == "anomalyclip" and doc["source"] == "visa"
    check_scores_match_sklearn(doc)
    assert np.isfinite(doc["mean"]["pixel"]["auroc"]["value"])


def test_import_needs_a_run_config_of_the_same_method(tmp_path, capsys):
    torch.save({"prompt_learner": {}}, tmp_path / "x.pth")
    code = main(["import-checkpoint", "--from", "anomalyclip", str(tmp_path / "x.pth"), "--config", "tiny",
                 "--out", str(tmp_path / "model.pt")])
    assert code == 2 and "needs one with method: anomalyclip" in capsys.readouterr().err
    assert not (tmp_path / "model.pt").exists()


def test_a_malformed_released_checkpoint_writes_nothing(tmp_path, capsys):
    torch.save({"prompt_learner": {"ctx_pos": torch.zeros(1)}}, tmp_path / "bad.pth")
    code = main(["import-checkpoint", "--from", "anomalyclip", str(tmp_path / "bad.pth"), "--config",
                 "tiny_anomalyclip", "--out", str(tmp_path / "model.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "bad.pth" in err and "missing key(s)" in err
    assert not (tmp_path / "model.pt").exists()


def test_clip_predicts_loose_images_given_their_class_name(clip_config, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "part.png"
    Image.new("RGB", (60, 40), (200, 40, 40)).save(image)
    args = ["predict", "--config", str(clip_config), str(image), "--out", str(tmp_path / "pred")]
    assert main(args) == 2
    assert "give --class-name" in capsys.readouterr().err and not (tmp_path / "pred" / "scores.json").exists()
    assert main([*args, "--class-name", "metal_nut"]) == 0
    row = json.loads((tmp_path / "pred" / "scores.json").read_text())["images"][0]
    # CLIP's image score is its global score alone.
    assert row["status"] == "scored" and row["image_score"] == pytest.approx(row["global_score"])
