"""The Snakemake DAG of the paper and demo configs: exactly the protocol's jobs (the controls included
by default), the released-checkpoint check's jobs and no training, and a clean lint."""

from __future__ import annotations

import re
import shlex
import shutil

import pytest
import yaml

from wmoe_clip.cli import main

from snakemake_util import (EVALUATE_RULE, REPO, by_kind, job_counts, outputs_by_rule, rule_kind, shell_commands,
                             slurm_profile, snakemake)

DATASETS = ["mvtec", "visa", "btad", "ksdd2", "dagm", "dtd", "headct", "brainmri", "br35h", "isic",
            "colondb", "clinicdb", "endo", "kvasir"]
VARIANTS = ["base", "ctds", "ctds_wcma", "ctds_samoe", "full"]
# The paper's protocol, written out independently of the config: VisA-trained full model on the
# 13 others, MVTec-trained full model on VisA, and every variant on the MVTec-AD and VisA cells.
EXPECTED_TRAIN = {(s, v) for s in ("visa", "mvtec") for v in VARIANTS}
EXPECTED_EVAL = (
    {("visa", t, "full") for t in DATASETS if t != "visa"}
    | {("mvtec", "visa", "full")}
    | {("visa", "mvtec", v) for v in VARIANTS}
    | {("mvtec", "visa", v) for v in VARIANTS}
)
# The controls, on by default: AnomalyCLIP trained on each source and evaluated on its Table 1 cells,
# CLIP evaluated without training (source none) on every target.
CONTROL_TRAIN = {(s, "anomalyclip") for s in ("visa", "mvtec")}
CONTROL_EVAL = ({(s, t, "anomalyclip") for s, t, v in EXPECTED_EVAL if v == "full"}
                | {("none", t, m) for t in DATASETS for m in ("clip", "winclip")})
TRAIN = re.compile(r"^results/train/(\w+)/(\w+)/seed(\d+)/model\.pt$")
EVAL = re.compile(r"^results/(?:demo/)?eval/(\w+)/(\w+)/(\w+)/seed(\d+)\.json$")


NO_CONTROLS = ("--config", "methods={main: wmoe_clip, baselines: [], configs: {anomalyclip: {base: anomalyclip}}}")


def test_expected_protocol_size():
    assert len(EXPECTED_TRAIN) == 10 and len(EXPECTED_EVAL) == 22
    assert len(CONTROL_TRAIN) == 2 and len(CONTROL_EVAL) == 3 * 14


def evaluate_jobs(*args: str) -> dict[str, set[tuple[str, ...]]]:
    """evaluate rule -> the (source, target, run, seed) of its models' JSONs."""
    return {rule: {EVAL.match(p).groups() for p in paths if p.endswith(".json")}
            for rule, paths in outputs_by_rule(*args).items() if EVALUATE_RULE.match(rule)}


def test_paper_dry_run_lists_exactly_the_protocol():
    counts = by_kind(job_counts())
    # Two evaluate jobs per target: WMoE-CLIP and CLIP share one backbone configuration, AnomalyCLIP's
    # (compat numerics, layer 24) is the other. Three run configs: one per method.
    assert counts == {
        "download": 14, "prepare": 14, "download_weights": 2, "tracking_init": 1, "run_config": 4,
        "train": 12, "evaluate": 42, "report": 1, "default": 1,
    }
    rules = outputs_by_rule()
    assert not {"import_released", "download_released", "report_released"} & set(rules)
    rules["evaluate"] = set().union(*(rules.pop(r) for r in list(rules) if EVALUATE_RULE.match(r)))
    trained = {TRAIN.match(p).groups() for p in rules["train"] if p.endswith("model.pt")}
    assert trained == {(s, v, "0") for s, v in EXPECTED_TRAIN | CONTROL_TRAIN}
    evaluated = {EVAL.match(p).groups() for p in rules["evaluate"] if p.endswith(".json")}
    assert evaluated == {(*cell, "0") for cell in EXPECTED_EVAL | CONTROL_EVAL}
    assert rules["download"] == {f"resources/raw/{d}/download.json" for d in DATASETS}
    assert rules["report"] == {f"reports/paper/{f}" for f in ("index.html", "table1.tex", "table2.tex")}


def test_paper_dry_run_without_controls():
    counts = by_kind(job_counts(*NO_CONTROLS))
    # One evaluate job per target: the paper's 22 evaluations share one backbone configuration.
    assert counts == {
        "download": 14, "prepare": 14, "download_weights": 1, "tracking_init": 1, "run_config": 1,
        "train": 10, "evaluate": 14, "report": 1, "default": 1,
    }


def test_anomalyclip_in_its_own_protocol_dry_run():
    own = ("--config", "methods={main: wmoe_clip, baselines: [clip, anomalyclip], "
           "configs: {anomalyclip: {base: anomalyclip, protocol: own}}}")
    rules = outputs_by_rule(*own)
    trained = {TRAIN.match(p).groups() for p in rules["train"] if p.endswith("model.pt")}
    assert trained == {(s, v, "0") for s, v in EXPECTED_TRAIN | CONTROL_TRAIN}
    jsons = {EVAL.match(p).groups() for r, paths in rules.items() if EVALUATE_RULE.match(r) for p in paths
             if p.endswith(".json")}
    # Its paper's protocol: MVTec AD-trained on every target but MVTec AD, VisA-trained on MVTec AD.
    assert {j for j in jsons if j[2] == "anomalyclip"} == (
        {("mvtec", t, "anomalyclip", "0") for t in DATASETS if t != "mvtec"} | {("visa", "mvtec", "anomalyclip", "0")})


def test_released_check_plans_the_imports_and_evaluations_and_no_training():
    counts = by_kind(job_counts("released_check"))
    # The data of the 14 targets, the CLIP weights (the import checks the token embeddings), AnomalyCLIP's
    # run config, the released checkpoints' download, two imports, one evaluate job per target, a report.
    assert counts == {
        "download": 14, "prepare": 14, "download_weights": 1, "tracking_init": 1, "run_config": 1,
        "download_released": 1, "import_released": 2, "evaluate": 14, "report_released": 1, "released_check": 1,
    }
    rules = outputs_by_rule("released_check")
    assert "train" not in rules and "report" not in rules
    assert rules["run_config"] == {"results/run_config/anomalyclip.yaml"}
    assert rules["download_released"] == {"resources/weights/anomalyclip/checkpoints.json"}
    assert rules["import_released"] == {f"results/imported/{s}/anomalyclip_released/model.pt" for s in ("visa", "mvtec")}
    jobs = {r: {EVAL.match(p).groups() for p in paths if p.endswith(".json")}
            for r, paths in rules.items() if EVALUATE_RULE.match(r)}
    assert all(r.startswith("evaluate_released_") and len(models) == 1 for r, models in jobs.items())
    assert set().union(*jobs.values()) == ({("visa", "mvtec", "anomalyclip_released", "111")}
                                           | {("mvtec", t, "anomalyclip_released", "111") for t in DATASETS if t != "mvtec"})
    assert rules["report_released"] == {f"reports/paper/released_check/{f}" for f in ("index.html", "table1.tex", "table2.tex")}
    # The commands: the download of the released checkpoints alone, each import from its file.
    commands = shell_commands("released_check")
    assert "wmoe-clip download-weights --dest resources/weights --anomalyclip --skip-clip > logs/paper/released_check/download.log 2>&1" in commands
    assert ("wmoe-clip import-checkpoint --from anomalyclip resources/weights/anomalyclip/9_12_4_multiscale/epoch_15.pth "
            "--config results/run_config/anomalyclip.yaml --out results/imported/visa/anomalyclip_released/model.pt "
            "> logs/paper/released_check/import/visa.log 2>&1") in commands


def test_plain_dry_run_has_work_to_do():
    # The root Snakefile must carry the default target itself (docs/PIPELINE.md §1.3).
    out = snakemake("--dry-run", "--forceall").stdout
    assert "Nothing to be done" not in out and "report" in out


def test_evaluate_jobs_group_each_target_by_backbone_configuration():
    # Paper without controls: one job per target with all its models (the five variants on the ablation targets).
    jobs = evaluate_jobs(*NO_CONTROLS)
    targets = {EVALUATE_RULE.match(r).group(1): models for r, models in jobs.items()}
    assert len(jobs) == len(targets) == 14
    assert targets == {t: {(s, t, v, "0") for s, tt, v in EXPECTED_EVAL if tt == t} for t in DATASETS}
    # With the three controls: CLIP shares WMoE-CLIP's backbone configuration (its run config is
    # model_config with method clip), AnomalyCLIP's own (compat numerics, layer 24) is a second pass,
    # WinCLIP's (ViT-B-16-plus-240 and its window embeddings) a third.
    jobs = evaluate_jobs()
    assert len(jobs) == 3 * 14
    for rule, models in jobs.items():
        runs = {v for _, _, v, _ in models}
        assert runs in ({"anomalyclip"}, {"winclip"}) or not runs & {"anomalyclip", "winclip"} and "clip" in runs, \
            (rule, runs)
    # The demo: one pass per target for every method on the tiny model (AnomalyCLIP on the main model's
    # backbone configuration), the custom target included, and one of WinCLIP's tiny backbone per dataset.
    jobs = evaluate_jobs("--configfile", "config/demo.yaml")
    assert len(jobs) == 15 + 14 and len({EVALUATE_RULE.match(r).group(2) for r in jobs}) == 2
    assert sum(map(len, jobs.values())) == 22 + 10 + 14 + 14 + 14


def test_evaluate_job_reads_the_feature_cache_of_a_source_trained_with_it():
    # The paper's trainings cache their features (vit_l14_336): the evaluations of VisA and MVTec read
    # them; other targets are encoded once in their job and not written to the cache. AnomalyCLIP's
    # shipped config does not cache, so its own jobs do not either; WinCLIP's windows are not in the cache.
    commands = [c for c in shell_commands() if " wmoe-clip evaluate " in c]
    for command in commands:
        words = shlex.split(command)
        cached = (words[words.index("--target") + 1] in ("visa", "mvtec") and "anomalyclip/" not in command
                  and "winclip" not in command)
        assert ("--feature-cache" in words) == cached, command
        assert words[words.index("--cache-dir") + 1] == "resources/feature-cache"
    trains = [shlex.split(c) for c in shell_commands() if " wmoe-clip train " in c]
    assert trains and all(w[w.index("--cache-dir") + 1] == "resources/feature-cache" for w in trains)


def test_demo_dag_is_the_same_over_synthetic_data():
    counts = by_kind(job_counts("--configfile", "config/demo.yaml"))
    # The demo adds one custom target, a synthetic folder: every trained model is evaluated on it too,
    # and the three baselines; every model of a target on the tiny model in one job, WinCLIP's in another.
    assert counts == {
        "synth": 14, "synth_custom": 1, "prepare": 14, "prepare_custom": 1, "tracking_init": 1, "run_config": 4,
        "train": 12, "evaluate": 15 + 14, "report": 1, "default": 1,
    }
    rules = outputs_by_rule("--configfile", "config/demo.yaml")
    rules["evaluate"] = set().union(*(rules.pop(r) for r in list(rules) if EVALUATE_RULE.match(r)))
    assert all(p.startswith("results/demo/") for p in rules["train"] | rules["evaluate"])
    assert rules["synth_custom"] == {"resources/demo/raw/custom/parts"}
    on_parts = {p for p in rules["evaluate"] if p.endswith(".json") and "/parts/" in p}
    assert on_parts == {f"results/demo/eval/{s}/parts/{v}/seed0.json" for s, v in EXPECTED_TRAIN}
    assert rules["report"] == {f"reports/demo/{f}" for f in ("index.html", "table1.tex", "table2.tex")}


def test_seeds_multiply_trainings_and_evaluations():
    counts = by_kind(job_counts("--config", "seeds=[0,1,2]"))
    # AnomalyCLIP trained per seed; CLIP and WinCLIP, which do not train, evaluated once per target.
    assert (counts["train"], counts["evaluate"], counts["prepare"]) == (30 + 6, 3 * 14, 14)
    jobs = evaluate_jobs("--config", "seeds=[0,1,2]")
    assert sum(map(len, jobs.values())) == 66 + 3 * 14 + 2 * 14


def test_paper_run_config_job_trains_from_the_downloaded_weights(tmp_path):
    # The job's own command, run as is: it must validate and point the model at the weights file.
    from wmoe_clip.config import load_config

    command = next(c for c in shell_commands() if c.startswith("wmoe-clip run-config "))
    words = shlex.split(command)
    words = words[1: words.index(">")]
    out = tmp_path / "run_config.yaml"
    words[words.index("--out") + 1] = str(out)
    assert main(words) == 0
    cfg = load_config(out)
    assert cfg.model.pretrained == "resources/weights/vit_l14_336_openai.pt"
    assert cfg.model.backbone == load_config("vit_l14_336").model.backbone


def test_minimal_config_gets_the_schema_defaults(tmp_path):
    # Only the required keys, in a folder without config/config.yaml: the rest comes from the schema.
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "paper_results.yaml", tmp_path / "config")
    minimal = tmp_path / "minimal.yaml"
    minimal.write_text(yaml.safe_dump({"run": "minimal", "sources": ["visa"], "targets": {"visa": ["mvtec"]}}))
    args = ("--snakefile", str(REPO / "Snakefile"), "--configfile", str(minimal))
    counts = by_kind(job_counts(*args, cwd=tmp_path))
    assert counts == {"download": 2, "prepare": 2, "download_weights": 1, "tracking_init": 1, "run_config": 1,
                      "train": 1, "evaluate": 1, "report": 1, "default": 1}
    rules = outputs_by_rule(*args, cwd=tmp_path)
    assert [rules[r] for r in rules if EVALUATE_RULE.match(r)][0] == {"results/eval/visa/mvtec/full/seed0.json", "results/eval/visa/mvtec/full/seed0.png"}
    assert rules["report"] == {f"reports/paper/{f}" for f in ("index.html", "table1.tex", "table2.tex")}
    assert rules["tracking_init"] == {"results/tracking/initialised.json"}


def test_config_is_validated():
    proc = snakemake("--dry-run", "--config", "data_source=ftp", check=False)
    assert proc.returncode != 0 and "data_source" in proc.stdout + proc.stderr
    # A custom target may not take a registry dataset's name.
    proc = snakemake("--dry-run", "--config", "custom_targets={mvtec: tests}", check=False)
    assert proc.returncode != 0 and "custom_targets" in proc.stdout + proc.stderr


@pytest.mark.parametrize("args", [(), ("--configfile", "config/demo.yaml")], ids=["paper", "demo"])
def test_lint_is_clean(args):
    proc = snakemake("--lint", *args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_profiles_name_only_real_rules_and_standard_resources():
    # `evaluate` names every evaluate job (their rules are generated, one per target and backbone).
    rules = set(map(rule_kind, job_counts())) | {"synth"}
    slurm = slurm_profile(GPU_MODEL="a100", PARTITION="gpu", ACCOUNT="lab")
    assert slurm["executor"] == "slurm"
    assert set(slurm["set-resources"]) <= rules and set(slurm["set-threads"]) <= rules
    # slot: the one-at-a-time token of a submission (profiles/slurm/config.yaml).
    standard = {"gpu", "gpu_model", "mem_mb", "runtime", "cpus_per_task", "slurm_partition", "slurm_account", "slot"}
    for resources in [slurm["default-resources"], *slurm["set-resources"].values()]:
        assert set(resources) <= standard
    default = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert default["resources"] == {"gpu": 1} and default["rerun-incomplete"] is True


def test_slurm_profile_defaults_fit_a_small_gpu_node_and_leave_site_choices_to_slurm():
    slurm = slurm_profile()
    # No partition or account: sbatch gets neither, so the cluster's defaults apply.
    assert "slurm_partition" not in slurm["default-resources"] and "slurm_account" not in slurm["default-resources"]
    assert slurm["slurm-no-account"] is True
    for rule in ("train", "evaluate"):
        assert slurm["set-resources"][rule]["gpu"] == 1 and "gpu_model" not in slurm["set-resources"][rule]
        assert slurm["set-resources"][rule]["mem_mb"] <= 16000 and slurm["set-threads"][rule] <= 4
    assert slurm["slurm-status-command"] in ("sacct", "squeue")


def test_slurm_site_values_come_from_the_environment():
    slurm = slurm_profile(PARTITION="gpu", ACCOUNT="lab", GPU_MODEL="a100", TRAIN_CPUS="8", EVALUATE_MEM_MB="30000",
                          TRAIN_RUNTIME="2d", STATUS_COMMAND="sacct", EVALUATE_GROUP="2")
    assert (slurm["default-resources"]["slurm_partition"], slurm["default-resources"]["slurm_account"]) == ("gpu", "lab")
    assert slurm["slurm-no-account"] is False and slurm["slurm-status-command"] == "sacct"
    assert slurm["set-resources"]["train"]["gpu_model"] == "a100" and slurm["set-resources"]["train"]["runtime"] == "2d"
    assert slurm["set-threads"]["train"] == 8 and slurm["set-resources"]["evaluate"]["mem_mb"] == 30000
    assert slurm["group-components"] == {"evaluate": 2}
    # A CPU-only cluster: no GPU request at all, whatever the model says.
    cpu = slurm_profile(GPUS="0", GPU_MODEL="a100")
    assert all(cpu["set-resources"][r]["gpu"] == 0 and "gpu_model" not in cpu["set-resources"][r]
               for r in ("train", "evaluate"))


def test_slurm_profile_names_a_bad_site_value():
    with pytest.raises(Exception, match="WMOE_SLURM_TRAIN_CPUS='eight'"):
        slurm_profile(TRAIN_CPUS="eight")


def test_slurm_profile_is_valid_and_a_group_shares_one_gpu():
    slurm = slurm_profile()
    # Grouped evaluate jobs get no device of their own: they hold the one slot of their submission in
    # turn, and the limit is per submission ("local"), so it does not serialise the cluster. By
    # default a submission carries one evaluate job (each already scores all models of its target).
    assert slurm["group-components"] == {"evaluate": 1} and slurm["resources"] == {"slot": 1}
    assert slurm["set-resource-scopes"] == {"slot": "local"}
    # Every key is a valid flag of the documented invocation, the executor plugin included.
    out = snakemake("--dry-run", "--profile", "profiles/slurm", "--workflow-profile", "none").stdout
    assert "Group job evaluate" in out and "train" in out
