"""The demo DAG end to end on a reduced config: synth -> prepare -> train -> evaluate -> report,
then a rerun that has nothing to do, and a failing job that leaves nothing looking finished."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from snakemake_util import REPO, snakemake

pytestmark = pytest.mark.slow


def _config(tmp: Path) -> Path:
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    demo.update(
        run="e2e",
        paths={k: str(tmp / k) for k in ("resources", "results", "reports", "logs")},
        synth_size=4,
        overrides={**demo["overrides"], "train.epochs": 1},
        targets={"visa": ["mvtec", "headct", "isic"], "mvtec": ["visa"]},
        variants=["base", "full"],
        custom_targets={"parts": str(tmp / "resources" / "raw" / "custom" / "parts")},
        mlflow={"enabled": True, "tracking_uri": f"sqlite:///{tmp}/mlflow.db", "experiment": "e2e"},
    )
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(demo))
    return path


def _run(config: Path, check: bool = True):
    # The same flags as `make demo`, with the project's environment first on PATH.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return snakemake("--configfile", str(config), "--cores", "2", "--set-threads", "train=1", "evaluate=1",
                     "--set-resources", "train:gpu=0", "evaluate:gpu=0", check=check)


def test_demo_dag_end_to_end(tmp_path):
    config = _config(tmp_path)
    _run(config)
    reports, results = tmp_path / "reports", tmp_path / "results"
    assert sorted(p.name for p in reports.iterdir()) == ["index.html", "table1.tex", "table2.tex"]
    evals = sorted(p.relative_to(results / "eval").as_posix()[: -len("/seed0.json")]
                   for p in results.glob("eval/*/*/*/seed0.json"))
    # Table 1 and 2 cells, the custom target (a synthetic folder) with every trained WMoE-CLIP model, and
    # the baselines on the Table 1 cells: AnomalyCLIP trained on each source, CLIP and WinCLIP without training.
    assert evals == ["mvtec/parts/base", "mvtec/parts/full", "mvtec/visa/anomalyclip", "mvtec/visa/base",
                     "mvtec/visa/full", "none/headct/clip", "none/headct/winclip", "none/isic/clip",
                     "none/isic/winclip", "none/mvtec/clip", "none/mvtec/winclip", "none/visa/clip",
                     "none/visa/winclip", "visa/headct/anomalyclip", "visa/headct/full", "visa/isic/anomalyclip", "visa/isic/full",
                     "visa/mvtec/anomalyclip", "visa/mvtec/base", "visa/mvtec/full", "visa/parts/base",
                     "visa/parts/full"]
    docs = [json.loads(p.read_text()) for p in results.glob("eval/*/*/*/seed0.json")]
    runs = [json.loads(p.read_text()) for p in results.glob("train/*/*/seed0/run.json")]
    # Every image through each backbone configuration's encoder once. The main one (WMoE-CLIP, AnomalyCLIP,
    # CLIP): the trainings' feature caches (built once per source, read by the other trainings and by the
    # evaluations of the sources) and one shared pass per target. WinCLIP's (its own tiny backbone and
    # windows): one pass per Table 1 target. Distinct test images, counted from the prepared data
    # (5 datasets: 2 sources, 3 other targets, WinCLIP's the 4 Table 1 targets).
    def distinct_images(*datasets):
        return sum(len(records) for d in datasets for records in
                   json.loads((tmp_path / f"resources/prepared/{d}/meta.json").read_text())["test"].values())

    distinct = distinct_images("visa", "mvtec", "headct", "isic", "custom/parts")
    distinct_winclip = distinct_images("visa", "mvtec", "headct", "isic")
    winclip = {d["encoder"]["backbone"] for d in docs if d["variant"] == "winclip"}
    assert len(winclip) == 1
    passes = {(d["encoder"]["job"], d["encoder"]["backbone"]): d["encoder"]["images"] for d in docs}
    main = {key: n for key, n in passes.items() if key[1] not in winclip}
    assert len(main) == 5 and len(passes) == 5 + 4  # one evaluate job per target and backbone configuration
    assert sum(main.values()) + sum(r["encoder_images"] for r in runs) == distinct
    assert sum(passes.values()) - sum(main.values()) == distinct_winclip
    shared = {(d["encoder"]["job"], d["encoder"]["backbone"]): d["encoder"]["shared_by"] for d in docs}
    assert sorted(n for key, n in shared.items() if key in main) == [3, 3, 4, 4, 4]
    assert sorted(n for key, n in shared.items() if key not in main) == [1, 1, 1, 1]
    doc = json.loads((results / "eval/visa/mvtec/full/seed0.json").read_text())
    assert doc["format"] == "wmoe-clip/eval" and doc["synthetic"] is True
    html = (reports / "index.html").read_text()
    assert html.count("Synthetic data:</strong> the numbers in this table") == 3  # Table 1, 2, custom
    assert 'id="custom"' in html and html.count("<tr><td>parts</td>") == 4
    assert 'alt="training curves"' in html and html.count('src="data:image/') == 23  # curves + 22 figures
    # Table 1 measures the baselines beside the published numbers for them, WinCLIP's own paper's among them.
    for group in ("WinCLIP", "AnomalyCLIP", "CLIP"):
        assert re.search(rf'<th colspan="3" class="group [^"]*">{group}</th>', html), group
    assert 'title="91.8: WinCLIP (CVPR 2023, arXiv:2303.14814)' in html
    # The encoder passes: per backbone configuration every image once (ratio 1.00); the protocol's total
    # counts WinCLIP's pass on the Table 1 targets as a second one.
    assert "2 backbone configurations" in html
    assert f"for {distinct} distinct test images (ratio 1.00)" in html
    assert f"for {distinct_winclip} distinct test images (ratio 1.00)" in html
    total = distinct + distinct_winclip
    assert f"{total:,} images through the frozen encoder for {distinct:,} distinct test images " \
           f"(ratio {total / distinct:.2f})" in html
    table1 = (reports / "table1.tex").read_text()
    mvtec_auroc = next(line for line in table1.splitlines() if line.startswith("MVTec-AD & AUROC"))
    assert f"{100 * doc['mean']['image']['auroc']['value']:.1f}" in mvtec_auroc
    assert (tmp_path / "mlflow.db").is_file()
    marker = json.loads((results / "tracking" / "initialised.json").read_text())
    assert marker["experiment"] == "e2e" and marker["tracking_uri"] == f"sqlite:///{tmp_path}/mlflow.db"

    # Started again, the finished DAG has nothing to do.
    again = _run(config)
    assert "Nothing to be done" in again.stdout + again.stderr

    # A job that fails leaves no output that looks finished, and the next run completes the DAG.
    meta = tmp_path / "resources/prepared/isic/meta.json"
    good = meta.read_text()
    meta.write_text("{")
    failed = _run(config, check=False)
    assert failed.returncode != 0
    out = results / "eval/visa/isic/full/seed0"
    assert not out.with_suffix(".json").exists() and not out.with_suffix(".png").exists()
    assert not list(out.parent.glob(".tmp-*"))
    meta.write_text(good)
    _run(config)
    assert out.with_suffix(".json").is_file()
