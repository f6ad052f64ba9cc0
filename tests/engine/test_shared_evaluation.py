"""One `wmoe-clip evaluate` for many models: one frozen-encoder pass per backbone configuration, and for
each model exactly the JSON that evaluating it alone writes."""

import dataclasses
import json

import pytest
import torch
import yaml

from wmoe_clip.cli import main
from wmoe_clip.config import load_config
from wmoe_clip.engine.train import apply_overrides, train
from wmoe_clip.model.backbone import FrozenCLIP

# Fields that describe the job rather than the model's results.
JOB_FIELDS = ("mlflow_run_id", "timings", "encoder", "tracking")


@pytest.fixture(scope="module")
def models(trained, make_prepared, tmp_path_factory):
    """Four models on VisA stand-ins: two WMoE-CLIP variants and plain CLIP on the tiny backbone, and
    AnomalyCLIP on another backbone (the 12-block text tower), so two backbone configurations."""
    root = tmp_path_factory.mktemp("models")
    data = make_prepared("visa", 4)
    base = apply_overrides(load_config("tiny"), "base", seed=1, epochs=1)
    train(base, "visa", data, root / "base", progress=False)
    anomalyclip = apply_overrides(load_config("tiny_anomalyclip"), None, seed=0, epochs=1)
    train(anomalyclip, "visa", data, root / "anomalyclip", progress=False)
    clip = root / "clip.yaml"
    clip.write_text(yaml.safe_dump(load_config("tiny").for_method("clip").to_dict()))
    return [("--checkpoint", trained[1] / "model.pt"), ("--checkpoint", root / "base" / "model.pt"),
            ("--config", clip), ("--checkpoint", root / "anomalyclip" / "model.pt")]


@pytest.fixture
def encoder_calls(monkeypatch):
    """Images through the frozen image encoder, counted independently of the code's own counter."""
    calls = []
    encode = FrozenCLIP.encode_image

    def counting(self, images):
        calls.append(len(images))
        return encode(self, images)

    monkeypatch.setattr(FrozenCLIP, "encode_image", counting)
    return calls


def model_args(models, folder, first=0):
    """``--checkpoint/--config PATH --out FOLDER/m<i>.json`` for each model, numbered from ``first``."""
    args = []
    for i, (option, path) in enumerate(models, first):
        args += [option, str(path), "--out", str(folder / f"m{i}.json")]
    return args


def evaluate(args, data, *extra):
    assert main(["evaluate", "--target", "mvtec", "--data", str(data), "--no-tracking", "--quiet", *extra,
                 *args]) == 0


def test_shared_pass_writes_exactly_the_jsons_of_separate_evaluations(models, make_prepared, tmp_path,
                                                                     encoder_calls):
    data = make_prepared("mvtec", 4)
    for i, model in enumerate(models):
        evaluate(model_args([model], tmp_path / "separate", first=i), data)
    separate_calls = sum(encoder_calls)
    encoder_calls.clear()
    evaluate(model_args(models, tmp_path / "shared"), data)
    n = 60  # 15 MVTec-AD classes x 4 test images
    assert separate_calls == 4 * n and sum(encoder_calls) == 2 * n  # one pass per backbone configuration

    shared = [json.loads((tmp_path / "shared" / f"m{i}.json").read_text()) for i in range(4)]
    for i, doc in enumerate(shared):
        alone = json.loads((tmp_path / "separate" / f"m{i}.json").read_text())
        assert {k: v for k, v in doc.items() if k not in JOB_FIELDS} == \
               {k: v for k, v in alone.items() if k not in JOB_FIELDS}, f"model {i}"
        assert alone["encoder"]["images"] == n and alone["encoder"]["shared_by"] == 1
    assert [d["method"] for d in shared] == ["wmoe_clip", "wmoe_clip", "clip", "anomalyclip"]
    passes = {(d["encoder"]["job"], d["encoder"]["backbone"]): d["encoder"] for d in shared}
    assert len({d["encoder"]["job"] for d in shared}) == 1 and len(passes) == 2
    assert sorted(e["shared_by"] for e in passes.values()) == [1, 3]
    assert all(e["images"] == n and e["cache"] is None for e in passes.values())
    # Every figure is written beside its JSON.
    assert all((tmp_path / "shared" / f"m{i}.png").is_file() for i in range(4))


def test_a_feature_cache_built_by_one_job_is_read_by_the_next(models, make_prepared, tmp_path, encoder_calls):
    data = make_prepared("mvtec", 4)
    cache = ["--feature-cache", "--cache-dir", str(tmp_path / "cache")]
    evaluate(model_args(models[:2], tmp_path / "first"), data, *cache)
    evaluate(model_args(models[2:3], tmp_path / "second"), data, *cache)
    first = json.loads((tmp_path / "first" / "m0.json").read_text())["encoder"]
    second = json.loads((tmp_path / "second" / "m0.json").read_text())["encoder"]
    assert (first["cache"], first["images"], first["shared_by"]) == ("built", 60, 2)
    assert (second["cache"], second["images"]) == ("read", 0)
    assert sum(encoder_calls) == 60


def test_training_counts_the_images_it_encodes(make_prepared, tmp_path, encoder_calls):
    data = make_prepared("btad", 4)
    cfg = apply_overrides(load_config("tiny"), "full", seed=0, epochs=2)
    plain = train(cfg, "btad", data, tmp_path / "plain", progress=False)
    n = 12  # 3 BTAD classes x 4 test images
    history = json.loads((tmp_path / "plain" / "history.json").read_text())
    assert [e["encoder_images"] for e in history] == [n, n] and plain["encoder_images"] == 2 * n
    assert sum(encoder_calls) == 2 * n

    encoder_calls.clear()
    cached = apply_overrides(load_config("tiny"), "base", seed=0, epochs=2)
    cached = dataclasses.replace(cached, train=dataclasses.replace(cached.train, feature_cache=True))
    first = train(cached, "btad", data, tmp_path / "built", cache_dir=tmp_path / "cache", progress=False)
    second = train(cached, "btad", data, tmp_path / "read", cache_dir=tmp_path / "cache", progress=False)
    history = json.loads((tmp_path / "built" / "history.json").read_text())
    assert [e["encoder_images"] for e in history] == [n, 0] and first["encoder_images"] == n
    assert second["encoder_images"] == 0 and sum(encoder_calls) == n


def test_model_options_follow_their_model(models, make_prepared, tmp_path, capsys):
    data = str(make_prepared("mvtec", 4))
    (kind, path), out = models[0], str(tmp_path / "a.json")
    common = ["evaluate", "--target", "mvtec", "--data", data, "--no-tracking"]
    with pytest.raises(SystemExit):
        main([*common, kind, str(path)])
    assert "--out is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*common, kind, str(path), "--out", out, "--out", out])
    assert "--out given twice for one model" in capsys.readouterr().err
    # Two models writing one file are refused before anything is computed or written.
    assert main([*common, kind, str(path), "--out", out, models[1][0], str(models[1][1]), "--out", out]) == 2
    assert "two models of this evaluation would write" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists()
    # The first model's options may come before its --checkpoint, as a single evaluation always allowed.
    assert main([*common, "--out", out, kind, str(path), "--quiet"]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["encoder"]["shared_by"] == 1


def test_a_bad_second_model_stops_the_job_before_any_encoder_work(models, make_prepared, tmp_path, capsys,
                                                                  encoder_calls):
    bogus = tmp_path / "missing.pt"
    code = main(["evaluate", "--target", "mvtec", "--data", str(make_prepared("mvtec", 4)), "--no-tracking",
                 *model_args(models[:1], tmp_path), "--checkpoint", str(bogus), "--out", str(tmp_path / "b.json")])
    assert code == 2 and "missing.pt" in capsys.readouterr().err
    assert encoder_calls == [] and not (tmp_path / "m0.json").exists()


def test_shared_evaluation_logs_one_mlflow_run_per_model(models, make_prepared, tmp_path):
    from mlflow.tracking import MlflowClient

    from wmoe_clip.engine.tracking import default_tracking_uri

    assert main(["evaluate", "--target", "mvtec", "--data", str(make_prepared("mvtec", 4)), "--quiet",
                 *model_args(models[:3], tmp_path)]) == 0
    client = MlflowClient(default_tracking_uri())
    for i in range(3):
        doc = json.loads((tmp_path / f"m{i}.json").read_text())
        run = client.get_run(doc["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.metrics["encoder_shared_by"] == 3
        assert run.data.metrics["mean.image.auroc"] == pytest.approx(doc["mean"]["image"]["auroc"]["value"])
