"""The run summary's encoder passes on hand cases: a job shared by several checkpoints counts
once, a training that read another job's feature cache counts 0, each backbone configuration gets its own
line, and a file from before the counts existed makes the figure "not recorded", never a wrong number."""

from __future__ import annotations

import json

import pytest

from conftest import eval_json, write_eval, write_training
from wmoe_clip.errors import WMoEError
from wmoe_clip.report import build_report
from wmoe_clip.report.encoder import encoder_summary, summary_rows
from wmoe_clip.report.results import load_results

IMAGE = {"auroc": 0.9, "f1_max": 0.9, "ap": 0.9}
# Checkpoint sha256 per run: a training's run.json names the one its evaluations carry.
SHA = {run: c * 64 for run, c in (("full", "a"), ("base", "b"), ("anomalyclip", "c"), ("clip", "d"))}


def _scores(n_normal, n_anomalous):
    return {"labels": [0] * n_normal + [1] * n_anomalous, "scores": [0.1] * n_normal + [0.9] * n_anomalous}


# MVTec-AD: 10 test images in two classes; VisA: 8 in one.
MVTEC = {"bottle": _scores(2, 4), "cable": _scores(1, 3)}
VISA = {"pcb1": _scores(4, 4)}


def _encoder(images, job, backbone, shared_by, cache=None):
    return {"images": images, "job": job, "backbone": backbone, "shared_by": shared_by, "cache": cache}


def _protocol(root, anomalyclip=True):
    """Two WMoE-CLIP checkpoints trained on VisA (the first built VisA's feature cache, the second read it),
    scored on MVTec-AD in one shared job; CLIP (same backbone) scored on VisA from that cache; and
    AnomalyCLIP, whose backbone configuration differs, trained and evaluated with its own passes."""
    write_training(root, "visa", "full", 0, {"encoder_images": 8, "model_sha256": SHA["full"],
                                             "counts": {"n_images": 8, "n_normal": 4, "n_anomalous": 4, "n_classes": 1}})
    write_training(root, "visa", "base", 0, {"encoder_images": 0, "model_sha256": SHA["base"],
                                             "counts": {"n_images": 8, "n_normal": 4, "n_anomalous": 4, "n_classes": 1}})
    for run in ("full", "base"):
        write_eval(root, eval_json("visa", "mvtec", run, 0, image=IMAGE, scores=MVTEC, checkpoint_sha=SHA[run],
                                   encoder=_encoder(10, "job-1", "bb-wmoe", 2)))
    write_eval(root, eval_json("none", "visa", "clip", 0, image=IMAGE, scores=VISA, checkpoint_sha=SHA["clip"],
                               encoder=_encoder(0, "job-2", "bb-wmoe", 1, "read")))
    if anomalyclip:
        write_training(root, "visa", "anomalyclip", 0, {
            "encoder_images": 8, "model_sha256": SHA["anomalyclip"],
            "counts": {"n_images": 8, "n_normal": 4, "n_anomalous": 4, "n_classes": 1}})
        write_eval(root, eval_json("visa", "mvtec", "anomalyclip", 0, image=IMAGE, scores=MVTEC,
                                   checkpoint_sha=SHA["anomalyclip"], encoder=_encoder(10, "job-3", "bb-anomalyclip", 1)))
    return root


def test_one_backbone_every_image_once(tmp_path):
    s = encoder_summary(load_results(_protocol(tmp_path, anomalyclip=False)))
    # job-1 (10, shared by two checkpoints) counts once; job-2 read the cache (0); trainings 8 + 0.
    assert (s.total.images, s.total.eval_images, s.total.train_images) == (18, 10, 8)
    assert (s.total.eval_jobs, s.total.checkpoints, s.total.trainings) == (2, 3, 2)
    assert s.total.distinct == 10 + 8 and s.total.ratio == 1.0
    assert s.per_backbone == {}  # one backbone configuration: the total says it all
    assert summary_rows(load_results(tmp_path)) == [(
        "Encoder passes", "18 images through the frozen encoder for 18 distinct test images (ratio 1.00): "
        "evaluations 10 in 2 job(s) scoring 3 checkpoint(s), trainings 8 in 2 run(s)")]


def test_each_backbone_configuration_gets_its_line(tmp_path):
    s = encoder_summary(load_results(_protocol(tmp_path)))
    assert (s.total.images, s.total.distinct) == (36, 18)  # two configurations each encode both datasets
    assert list(s.per_backbone) == ["bb-anomalyclip", "bb-wmoe"]
    for backbone in s.per_backbone:
        passes = s.per_backbone[backbone][1]
        assert (passes.images, passes.distinct, passes.ratio) == (18, 18, 1.0)
    assert s.per_backbone["bb-anomalyclip"][1].trainings == 1 and s.per_backbone["bb-wmoe"][1].trainings == 2
    build_report(tmp_path, tmp_path / "report", resamples=10)
    html = (tmp_path / "report" / "index.html").read_text()
    assert "36 images through the frozen encoder for 18 distinct test images (ratio 2.00)" in html
    assert ("<td><strong>Encoder passes, backbone bb-anomalyclip</strong></td><td>wmoe-tiny-quickgelu at 112 px"
            in html)
    assert html.count("18 images through the frozen encoder for 18 distinct test images (ratio 1.00)") == 2


def test_a_source_that_is_never_a_target_counts_from_its_training(tmp_path):
    root = _protocol(tmp_path, anomalyclip=False)
    (root / "eval" / "none" / "visa" / "clip" / "seed0.json").unlink()
    s = encoder_summary(load_results(root))
    assert s.total.images == 18 and s.total.distinct == 18  # VisA's 8 from run.json counts


def test_a_partial_evaluation_does_not_shrink_the_dataset(tmp_path):
    root = _protocol(tmp_path, anomalyclip=False)
    doc = eval_json("visa", "mvtec", "ctds", 0, image=IMAGE, scores={"bottle": MVTEC["bottle"]},
                    encoder=_encoder(6, "job-4", "bb-wmoe", 1))
    write_eval(root, doc)
    s = encoder_summary(load_results(root))
    # The union of the classes evaluated: bottle (6) and cable (4), not the smaller file's 6.
    assert s.total.distinct == 18 and s.total.images == 24 and s.total.ratio == 24 / 18


def test_files_without_the_counts_are_not_recorded(tmp_path):
    root = _protocol(tmp_path)
    path = root / "eval" / "none" / "visa" / "clip" / "seed0.json"
    data = json.loads(path.read_text())
    del data["encoder"]
    path.write_text(json.dumps(data))
    run = root / "train" / "visa" / "base" / "seed0" / "run.json"
    run.write_text(json.dumps({k: v for k, v in json.loads(run.read_text()).items() if k != "encoder_images"}))
    assert summary_rows(load_results(root)) == [(
        "Encoder passes", "not recorded: 1 of 4 evaluation files and 1 of 3 trainings carry no encoder count "
        "(written by an older wmoe-clip, or a training without its run.json)")]


def test_a_job_whose_files_disagree_is_not_recorded(tmp_path):
    root = _protocol(tmp_path, anomalyclip=False)
    path = root / "eval" / "visa" / "mvtec" / "base" / "seed0.json"
    data = json.loads(path.read_text())
    data["encoder"]["images"] = 7
    path.write_text(json.dumps(data))
    (label, text), = summary_rows(load_results(root))
    assert text.startswith("not recorded: the evaluation files of job job-1 (backbone bb-wmoe) disagree")


def test_an_encoder_block_that_breaks_the_schema_is_refused_by_name(tmp_path):
    path = write_eval(tmp_path, eval_json("visa", "mvtec", "full", 0, image=IMAGE, scores=MVTEC,
                                          encoder=_encoder(10, "job-1", "bb-wmoe", 1, "maybe")))
    with pytest.raises(WMoEError, match=f"{path}.*encoder/cache"):
        load_results(tmp_path)
