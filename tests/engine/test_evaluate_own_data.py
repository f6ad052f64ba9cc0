"""A partial MVTec download and users' own datasets (folder, CSV) evaluate, and the report shows them
for what they are: "(2/15 classes)" beside the name, a section of their own."""

import json
import re
import shutil
from pathlib import Path

import pytest
from sklearn.metrics import roc_auc_score

from wmoe_clip.data import registry
from wmoe_clip.data.prepare import prepare, prepare_custom
from wmoe_clip.data.synth import generate
from wmoe_clip.engine.evaluate import evaluate
from wmoe_clip.engine.tracking import Tracker
from wmoe_clip.report import build_report

KEPT = ("bottle", "wood")
PAPER = Path(__file__).resolve().parents[2] / "config" / "paper_results.yaml"


@pytest.fixture(scope="module")
def own_results(trained, tmp_path_factory):
    """Evaluations of the tiny model on a 2-class MVTec, a custom folder, a custom CSV, an image-only set."""
    _, model_dir = trained
    base = tmp_path_factory.mktemp("own")
    results = base / "results"
    generate("mvtec", base / "raw" / "mvtec", size=4)
    for cls in registry.get("mvtec").classes:
        if cls not in KEPT:
            shutil.rmtree(base / "raw" / "mvtec" / cls)
    prepare("mvtec", base / "raw" / "mvtec", base / "prepared" / "mvtec", progress=False)
    generate("folder", base / "raw" / "parts", size=4, seed=1)
    prepare_custom("parts", base / "prepared" / "parts", raw=base / "raw" / "parts", progress=False)
    generate("folder", base / "raw" / "line3", size=4, seed=2, protocol="csv")
    prepare_custom("line3", base / "prepared" / "line3", csv_path=base / "raw" / "line3" / "labels.csv",
                   progress=False)
    shutil.copytree(base / "raw" / "parts" / "plate", base / "raw" / "plates" / "plate")
    prepare_custom("plates", base / "prepared" / "plates", raw=base / "raw" / "plates", progress=False)
    docs = {}
    for target in ("mvtec", "parts", "line3", "plates"):
        out = results / "eval" / "visa" / target / "full" / "seed0.json"
        docs[target] = evaluate(model_dir / "model.pt", target, base / "prepared" / target, out,
                                tracker=Tracker(enabled=False), progress=False)
    return docs, results


def test_partial_dataset_records_the_classes_evaluated(own_results):
    docs, _ = own_results
    dataset = docs["mvtec"]["dataset"]
    assert dataset["classes_evaluated"] == list(KEPT) == list(docs["mvtec"]["per_class"])
    assert dataset["n_registry_classes"] == 15 and dataset["protocol"] is None
    assert docs["mvtec"]["mean"]["image"]["auroc"]["n_classes"] == 2


@pytest.mark.parametrize("target", ["parts", "line3"])
def test_own_dataset_computes_only_what_applies(own_results, target):
    doc = own_results[0][target]
    assert doc["dataset"]["domain"] == "custom" and doc["dataset"]["n_registry_classes"] is None
    assert doc["dataset"]["image_metrics"] and doc["dataset"]["pixel_metrics"]
    per_class = doc["per_class"]
    assert set(per_class) == {"screw", "plate", "cable", "weld"}
    for cls in ("screw", "plate", "cable"):
        scores = doc["image_scores"][cls]
        assert per_class[cls]["image"]["auroc"] == pytest.approx(roc_auc_score(scores["labels"], scores["scores"]))
    # The image-only class (no masks), the pixel-only class, and cable, whose one anomalous image
    # without a mask is left out of its pixel metrics (and counted) but not of its image metrics.
    assert all(v is None for v in per_class["plate"]["pixel"].values())
    assert all(per_class[cls]["pixel"]["auroc"] is not None for cls in ("screw", "cable", "weld"))
    assert per_class["cable"]["n_anomalous_without_mask"] == 1 and doc["counts"]["n_anomalous_without_mask"] == 1 + \
        per_class["plate"]["n_anomalous"]
    assert per_class["cable"]["n_anomalous"] == sum(doc["image_scores"]["cable"]["labels"])
    assert all(v is None for v in per_class["weld"]["image"].values())
    assert doc["mean"]["image"]["auroc"]["n_classes"] == 3 and doc["mean"]["pixel"]["auroc"]["n_classes"] == 3


def test_image_only_dataset_has_no_pixel_level(own_results):
    doc = own_results[0]["plates"]
    assert not doc["dataset"]["pixel_metrics"] and list(doc["mean"]) == ["image"]


def test_report_marks_the_partial_mean_and_adds_a_section_for_own_data(own_results, tmp_path):
    _, results = own_results
    build_report(results, tmp_path, paper_path=PAPER, resamples=50)
    html = (tmp_path / "index.html").read_text()
    table1 = (tmp_path / "table1.tex").read_text()
    assert "MVTec-AD (2/15 classes)" in html and "MVTec-AD (2/15 classes)" in table1
    assert "covers 2 of 15 classes of the registry" in html and "covers 2 of 15 classes" in table1
    section = html[html.index('id="custom"'):]
    for name in ("parts", "line3", "plates"):
        assert f"<td>{name}</td>" in section
    plates = re.search(r"<tr><td>plates</td>(.*?)</tr>", section).group(1)
    assert plates.count("n/a") == 3  # pixel AUROC, AP, PRO do not apply
    assert "image level over 3 of 4 classes and pixel level over 3 of 4 classes" in section
    assert "custom" not in table1 and "parts" not in table1


def test_eval_json_of_own_data_is_self_describing(own_results):
    _, results = own_results
    doc = json.loads((results / "eval" / "visa" / "parts" / "full" / "seed0.json").read_text())
    assert doc["target"] == "parts" and doc["synthetic"] is True
    assert doc["dataset"]["classes_evaluated"] == list(doc["per_class"])
