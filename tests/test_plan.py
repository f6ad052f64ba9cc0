"""The protocol module against hand-written expectations: the jobs of the shipped workflow configs
(the paper's, with its controls or without, the demo's), AnomalyCLIP in its own paper's protocol, the
released-checkpoint check, the results layout's paths, and its one-line errors."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config, validate

from wmoe_clip.errors import WMoEError
from wmoe_clip.model.encoder_pass import encoder_passes
from wmoe_clip.config import config_with_overrides
from wmoe_clip.plan import (EVAL_FIGURE, EVAL_JSON, HISTORY, RELEASED_RUN, Evaluation, Paths, fields, glob,
                            load_workflow_config, plan)

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DATASETS = ["mvtec", "visa", "btad", "ksdd2", "dagm", "dtd", "headct", "brainmri", "br35h", "isic",
            "colondb", "clinicdb", "endo", "kvasir"]
VARIANTS = ["base", "ctds", "ctds_wcma", "ctds_samoe", "full"]
NO_CONTROLS = {"methods": {"baselines": []}}
OWN_PROTOCOL = {"methods": {"configs": {"anomalyclip": {"protocol": "own"}}}}


def workflow_config(*files: str, **overrides) -> dict:
    """A workflow config as Snakemake builds it: config/config.yaml, the files over it, then
    ``overrides`` (``--config``), validated and completed with the schema's defaults."""
    config: dict = {}
    for name in ("config/config.yaml", *files):
        update_config(config, yaml.safe_load((REPO / name).read_text()))
    update_config(config, copy.deepcopy(overrides))
    validate(config, str(SCHEMA))
    return config


def cells(evaluations) -> set[tuple]:
    return {(e.source, e.target, e.run, e.seed) for e in evaluations}


def test_paper_protocol_without_controls():
    p = plan(workflow_config(**NO_CONTROLS))
    # VisA-trained full model on the 13 others, MVTec-trained on VisA, every variant on those two cells.
    expected = ({("visa", t, "full", 0) for t in DATASETS if t != "visa"} | {("mvtec", "visa", "full", 0)}
                | {("visa", "mvtec", v, 0) for v in VARIANTS} | {("mvtec", "visa", v, 0) for v in VARIANTS})
    assert len(p.trainings) == 10 and len(p.evaluations) == 22 and len(p.jobs) == 14
    assert {(t.source, t.run, t.seed) for t in p.trainings} == {(s, v, 0) for s in ("visa", "mvtec") for v in VARIANTS}
    assert cells(p.evaluations) == expected
    # One job per target, all on one backbone configuration; the sources' jobs read the training cache.
    assert sorted(j.target for j in p.jobs.values()) == sorted(DATASETS)
    assert len({j.backbone for j in p.jobs.values()}) == 1
    assert {j.target for j in p.jobs.values() if j.feature_cache} == {"visa", "mvtec"}
    mvtec = next(j for j in p.jobs.values() if j.target == "mvtec")
    assert mvtec.name == f"evaluate_mvtec_{mvtec.backbone}"
    assert cells(mvtec.evaluations) == {("visa", "mvtec", v, 0) for v in VARIANTS}
    assert p.datasets == ("visa", "mvtec", "btad", "ksdd2", "dagm", "dtd", "headct", "brainmri", "br35h", "isic",
                          "colondb", "clinicdb", "endo", "kvasir")
    assert p.runs == {v: "wmoe_clip" for v in VARIANTS}
    assert p.variant("ctds") == "ctds"


def test_paper_runs_the_three_controls_by_default():
    p = plan(workflow_config())
    assert p.baselines == ("clip", "anomalyclip", "winclip")
    assert len(p.trainings) == 10 + 2 and len(p.evaluations) == 22 + 3 * 14 and len(p.jobs) == 3 * 14
    assert {(t.source, t.run) for t in p.trainings if t.method == "anomalyclip"} == {("visa", "anomalyclip"),
                                                                                      ("mvtec", "anomalyclip")}
    for method in ("clip", "winclip"):
        untrained = {(e.source, e.target, e.seed) for e in p.evaluations if e.method == method}
        assert untrained == {("none", t, 0) for t in DATASETS}
    # CLIP is model_config with method clip: WMoE-CLIP's encoder pass. AnomalyCLIP's shipped config
    # (compat numerics, layer 24) is a second pass per target, whose trainings do not cache; WinCLIP's
    # (its own backbone and window embeddings) a third, which never reads the cache.
    for job in p.jobs.values():
        methods = {e.method for e in job.evaluations}
        assert methods in ({"anomalyclip"}, {"winclip"}, {"wmoe_clip", "clip"}), job.name
        assert job.feature_cache == (job.target in ("visa", "mvtec") and methods == {"wmoe_clip", "clip"})
    assert p.variant("anomalyclip") is None


def test_demo_protocol():
    # Measured from `snakemake -n --configfile config/demo.yaml` before the protocol was a module:
    # 12 train jobs, 15 evaluate jobs (14 datasets and the custom target, one backbone configuration);
    # WinCLIP on its own tiny backbone adds one evaluate job per dataset.
    p = plan(workflow_config("config/demo.yaml"))
    assert len(p.trainings) == 12 and len(p.jobs) == 15 + 14
    assert len(p.evaluations) == 22 + 10 + 14 + 14 + 14
    assert len({j.backbone for j in p.jobs.values()}) == 2
    parts = next(j for j in p.jobs.values() if j.target == "parts")
    assert parts.custom and not parts.feature_cache
    assert cells(parts.evaluations) == {(s, "parts", v, 0) for s in ("visa", "mvtec") for v in VARIANTS}
    assert parts.data(p.paths) == "resources/demo/prepared/custom/parts/meta.json"
    assert p.custom == {"parts": "resources/demo/raw/custom/parts"}
    assert "parts" not in p.datasets


def test_anomalyclip_in_its_own_protocol():
    # Its paper: trained on MVTec AD for every target but MVTec AD, on VisA for MVTec AD.
    p = plan(workflow_config(**OWN_PROTOCOL))
    default = plan(workflow_config())
    own = [(e.source, e.target, e.run, e.seed) for e in p.evaluations if e.method == "anomalyclip"]
    assert sorted(own) == sorted([("visa", "mvtec", "anomalyclip", 0)]
                                 + [("mvtec", t, "anomalyclip", 0) for t in DATASETS if t != "mvtec"])
    assert {(t.source, t.run) for t in p.trainings if t.method == "anomalyclip"} == {("visa", "anomalyclip"),
                                                                                      ("mvtec", "anomalyclip")}
    # The other methods' cells and the job count are the default protocol's.
    assert [e for e in p.evaluations if e.method != "anomalyclip"] == \
        [e for e in default.evaluations if e.method != "anomalyclip"]
    assert len(p.jobs) == 3 * 14
    # A training source its own protocol adds is prepared, though the config neither trains on nor
    # evaluates it.
    config = workflow_config(**OWN_PROTOCOL)
    config.update(sources=["visa"], targets={"visa": ["btad"]}, ablation_targets={})
    small = plan(config)
    assert [(t.source, t.run) for t in small.trainings] == [("visa", "full"), ("mvtec", "anomalyclip")]
    assert [(e.source, e.target, e.run) for e in small.evaluations] == [
        ("visa", "btad", "full"), ("mvtec", "btad", "anomalyclip"), ("none", "btad", "clip"),
        ("none", "btad", "winclip")]
    assert small.datasets == ("visa", "mvtec", "btad") and small.sources == ("visa", "mvtec")


def test_released_check_imports_and_evaluates_without_training():
    p = plan(workflow_config())
    r = p.released
    # The VisA-trained release (9_12_4_multiscale) on MVTec AD, the MVTec-trained one on the 13 others; the
    # seed is the run config's (AnomalyCLIP's official 111), as the evaluation JSON records it.
    assert [(i.source, i.checkpoint) for i in r.imports] == [("visa", "9_12_4_multiscale/epoch_15.pth"),
                                                            ("mvtec", "9_12_4_multiscale_visa/epoch_15.pth")]
    assert sorted((e.source, e.target, e.run, e.seed) for e in r.evaluations) == sorted(
        [("visa", "mvtec", "anomalyclip_released", 111)]
        + [("mvtec", t, "anomalyclip_released", 111) for t in DATASETS if t != "mvtec"])
    assert not set(r.evaluations) & set(p.evaluations)
    # One job per target, on the AnomalyCLIP control's backbone configuration, reading no training's cache.
    control = {j.backbone for j in p.jobs.values() if {e.method for e in j.evaluations} == {"anomalyclip"}}
    assert sorted(j.target for j in r.jobs.values()) == sorted(DATASETS)
    assert {j.backbone for j in r.jobs.values()} == control and not any(j.feature_cache for j in r.jobs.values())
    mvtec = next(j for j in r.jobs.values() if j.target == "mvtec")
    assert mvtec.name == f"evaluate_released_mvtec_{mvtec.backbone}"
    assert mvtec.inputs(p.paths) == ["results/imported/visa/anomalyclip_released/model.pt"]
    assert mvtec.model_args(p.paths) == [
        "--checkpoint", "results/imported/visa/anomalyclip_released/model.pt", "--source", "visa",
        "--run", "anomalyclip_released", "--out", "results/eval/visa/mvtec/anomalyclip_released/seed111.json",
        "--figure", "results/eval/visa/mvtec/anomalyclip_released/seed111.png"]
    assert r.imports[0].checkpoint_path(p.paths) == "resources/weights/anomalyclip/9_12_4_multiscale/epoch_15.pth"
    assert r.download_record(p.paths) == "resources/weights/anomalyclip/checkpoints.json"
    assert p.paths.released_report_files == [f"reports/paper/released_check/{f}"
                                             for f in ("index.html", "table1.tex", "table2.tex")]
    # The report knows the run name as a released checkpoint's.
    from wmoe_clip.report import load_paper_results

    assert RELEASED_RUN in load_paper_results(REPO / "config" / "paper_results.yaml").references.released_runs


def test_seeds_multiply_trainings_and_evaluations_not_jobs():
    p = plan(workflow_config(seeds=[0, "1", 2], **NO_CONTROLS))
    assert (len(p.trainings), len(p.evaluations), len(p.jobs)) == (30, 66, 14)
    # AnomalyCLIP is trained per seed, CLIP and WinCLIP (no training) are evaluated once per target.
    p = plan(workflow_config(seeds=[0, "1", 2]))
    assert (len(p.trainings), len(p.evaluations), len(p.jobs)) == (30 + 6, 66 + 3 * 14 + 2 * 14, 3 * 14)


def test_paths_of_the_results_layout():
    p = plan(workflow_config("config/demo.yaml"))
    paths = p.paths
    visa = next(j for j in p.jobs.values() if j.target == "visa")
    clip = Evaluation("none", "visa", "clip", 0, "clip")
    assert clip in visa.evaluations
    assert clip.model_args(paths) == ["--config", "results/demo/run_config/clip.yaml",
                                      "--out", "results/demo/eval/none/visa/clip/seed0.json",
                                      "--figure", "results/demo/eval/none/visa/clip/seed0.png"]
    full = Evaluation("mvtec", "visa", "full", 0, "wmoe_clip")
    assert full.model_inputs(paths) == ["results/demo/train/mvtec/full/seed0/model.pt",
                                        "results/demo/train/mvtec/full/seed0/run.json"]
    assert "results/demo/eval/mvtec/visa/full/seed0.png" in visa.outputs(paths)
    assert len(visa.outputs(paths)) == 2 * len(visa.evaluations)
    assert visa.options(paths) == ["--feature-cache", "--cache-dir", "resources/demo/feature-cache"]
    assert visa.data(paths) == "resources/demo/prepared/visa/meta.json"
    assert paths.log("evaluate").format(target="visa", backbone=visa.backbone) == \
        f"logs/demo/evaluate/visa/{visa.backbone}.log"
    assert paths.report_files == ["reports/demo/index.html", "reports/demo/table1.tex", "reports/demo/table2.tex"]
    assert p.trainings[0].path(paths, HISTORY) == "results/demo/train/visa/full/seed0/history.json"


def test_run_configs_and_their_overrides():
    paper = plan(workflow_config())
    assert paper.run_config_base("wmoe_clip") == "vit_l14_336"
    assert paper.run_config_overrides("wmoe_clip") == {
        "method": "wmoe_clip", "model.pretrained": "resources/weights/vit_l14_336_openai.pt"}
    demo = plan(workflow_config("config/demo.yaml"))
    sets = demo.run_config_overrides("anomalyclip")
    assert demo.run_config_base("anomalyclip") == "tiny" and demo.run_config_base("clip") == "tiny"
    assert sets["method"] == "anomalyclip" and sets["model.anomalyclip.layers"] == [4] and sets["train.epochs"] == 2
    assert demo.run_configs["anomalyclip"].method == "anomalyclip"
    assert demo.run_configs["wmoe_clip"].train.epochs == 2


def test_pattern_globs_and_fields():
    assert glob(EVAL_JSON) == "eval/*/*/*/seed*.json"
    assert fields(EVAL_JSON, "eval/visa/mvtec/full/seed12.json") == {
        "source": "visa", "target": "mvtec", "run": "full", "seed": "12"}
    assert fields(EVAL_JSON, "eval/visa/mvtec/full/extra/seed0.json") is None
    assert fields(EVAL_FIGURE, "eval/visa/mvtec/full/seed0.json") is None
    assert Paths("r", "out", "rep", "logs").results(EVAL_JSON) == "out/eval/{source}/{target}/{run}/seed{seed}.json"


def test_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert plan(workflow_config()).tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    given = workflow_config(mlflow={"tracking_uri": "http://mlflow:5000"})
    assert plan(given).tracking_uri == "http://mlflow:5000"


@pytest.mark.parametrize("overrides, message", [
    ({"sources": ["visa", "nowhere"], "targets": {"visa": ["mvtec"], "nowhere": []}},
     "sources: unknown dataset 'nowhere'"),
    ({"targets": {"visa": ["mvtec", "atlantis"], "mvtec": ["visa"]}}, "targets.visa: unknown dataset 'atlantis'"),
    ({"methods": {"baselines": ["winclipx"]}}, "methods.baselines: unknown method winclipx"),
    ({"methods": {"main": "anomalyclip", "baselines": []}}, "methods.main: anomalyclip has no variants"),
    ({"variants": ["full", "tiny_moe"]}, "variants: unknown variant tiny_moe"),
    ({"custom_targets": {"mvtec": "data/parts"}}, "custom_targets.mvtec: dataset name 'mvtec' is a registry dataset"),
    ({"ablation_targets": {"btad": ["visa"]}}, r"not a source: \['btad'\]"),
    ({"overrides": {"train.epoch": 3}}, r"wmoe_clip run config: train: unknown key\(s\) epoch"),
    ({"methods": {"configs": {"clip": {"protocol": "own"}}}}, "methods.configs.clip.protocol: own needs a baseline"),
    ({"methods": {"baselines": [], "configs": {"anomalyclip": {"protocol": "own"}}}},
     "methods.configs.anomalyclip.protocol: own needs a baseline of methods.baselines"),
])
def test_config_errors_are_one_line(overrides, message):
    with pytest.raises(WMoEError, match=message) as info:
        plan(workflow_config(**overrides))
    assert "\n" not in str(info.value)


def test_encoder_passes_group_by_backbone_configuration():
    # Training settings do not change the encoder's features; the image layers read do.
    a = config_with_overrides("tiny", {}, "test")
    b = config_with_overrides("tiny", {"train.epochs": 7}, "test")
    c = config_with_overrides("tiny", {"model.feature_layers": [2]}, "test")
    groups = encoder_passes(["a", "b", "c", "a2"], {"a": a, "b": b, "c": c, "a2": a}.__getitem__)
    assert list(groups.values()) == [["a", "b", "a2"], ["c"]]


@pytest.mark.parametrize("files", [("config/config.yaml",), ("config/config.yaml", "config/demo.yaml")])
def test_workflow_config_outside_snakemake_is_snakemakes(files, monkeypatch):
    monkeypatch.chdir(REPO)
    assert load_workflow_config(files, SCHEMA) == workflow_config(*files[1:])


def test_workflow_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data_source: ftp\n")
    with pytest.raises(WMoEError, match=r"bad.yaml: data_source: 'ftp' is not one of") as info:
        load_workflow_config([REPO / "config/config.yaml", bad], SCHEMA)
    assert "\n" not in str(info.value)


def test_plan_imports_no_torch():
    code = "import sys, wmoe_clip.plan, wmoe_clip.report.results; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
