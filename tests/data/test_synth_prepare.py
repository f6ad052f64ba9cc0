"""synth -> prepare for every dataset, checked against what synth actually wrote."""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from wmoe_clip.cli import main
from wmoe_clip.data import registry
from wmoe_clip.data.meta import load_meta
from wmoe_clip.data.prepare import prepare
from wmoe_clip.data.synth import generate
from wmoe_clip.errors import WMoEError

SIZE = 4


def _triples(records):
    return sorted((r["cls_name"], r["img_path"], r["mask_path"], r["anomaly"]) for r in records)


@pytest.mark.parametrize("key", registry.keys())
def test_synth_then_prepare_matches_truth(key, tmp_path):
    spec = registry.get(key)
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    truth = generate(key, raw, size=SIZE, seed=1)
    result = prepare(key, raw, out, progress=False)

    root, meta = load_meta(out)
    assert root == raw.resolve() and meta["dataset"] == key
    assert list(meta["test"]) == list(spec.classes)
    for split in ("train", "test"):
        got = [r for recs in meta[split].values() for r in recs]
        assert _triples(got) == _triples(t for t in truth if t["split"] == split)
    test = [r for recs in meta["test"].values() for r in recs]
    n_anom = sum(r["anomaly"] for r in test)
    if spec.image_metrics:
        assert n_anom == len(spec.classes) * SIZE // 2 == len(test) - n_anom
    else:
        assert n_anom == len(test) == SIZE
    for r in test:
        assert (root / r["img_path"]).is_file()
        assert r["dataset_name"] == key and r["cls_name"] in spec.classes
        if r["anomaly"] and spec.pixel_metrics:
            with Image.open(root / r["mask_path"]) as m, Image.open(root / r["img_path"]) as im:
                mask = np.asarray(m)
                assert mask.shape[:2] == (im.height, im.width)
            assert (mask > meta["mask_threshold"]).any()
        else:
            assert r["mask_path"] == ""
    # Synthetic counts differ from the registry's: reported, not an error.
    report = json.loads((out / "prepare.json").read_text())
    assert result.differences and report["count_differences"] == result.differences
    assert report["counts"]["total"]["found"] == [len(test) - n_anom, n_anom]
    if spec.pixel_metrics:
        assert report["mask_values_after_binarisation"] == [0, 1]


def test_strict_fails_on_count_difference_and_writes_no_meta(tmp_path):
    generate("btad", tmp_path / "raw", size=SIZE)
    with pytest.raises(WMoEError, match=r"01: expected 21 normal / 49 anomalous, found 2 / 2"):
        prepare("btad", tmp_path / "raw", tmp_path / "out", strict=True, progress=False)
    # A failed run writes neither file: the message holds the differences.
    assert not (tmp_path / "out" / "meta.json").exists() and not (tmp_path / "out" / "prepare.json").exists()


def test_strict_passes_when_counts_match(tmp_path, monkeypatch):
    spec = registry.get("btad")
    matching = dataclasses.replace(spec, classes={c: (2, 2) for c in spec.classes}, totals=(6, 6))
    monkeypatch.setattr(registry, "get", lambda key, protocol=None: matching)
    generate("btad", tmp_path / "raw", size=SIZE)
    result = prepare("btad", tmp_path / "raw", tmp_path / "out", strict=True, progress=False)
    assert result.differences == [] and result.meta_path.is_file()


def test_single_wrapping_folder_is_found(tmp_path):
    truth = generate("mvtec", tmp_path / "raw" / "mvtec_download", size=2)
    prepare("mvtec", tmp_path / "raw", tmp_path / "out", progress=False)
    root, meta = load_meta(tmp_path / "out")
    assert root == (tmp_path / "raw").resolve()
    paths = {r["img_path"] for recs in meta["test"].values() for r in recs}
    assert paths == {"mvtec_download/" + t["img_path"] for t in truth if t["split"] == "test"}


def test_named_root_inside_a_pack_of_several_datasets(tmp_path):
    # PraNet's polyp pack: TestDataset/{CVC-ColonDB, CVC-300, ...} beside TrainDataset/{images, masks}.
    pack = tmp_path / "raw" / "Polyp_DataSet"
    truth = generate("colondb", pack / "TestDataset", size=2)
    (pack / "TestDataset" / "CVC-300" / "images").mkdir(parents=True)
    for sub in ("images", "masks"):
        (pack / "TrainDataset" / sub).mkdir(parents=True)
    prepare("colondb", tmp_path / "raw", tmp_path / "out", progress=False)
    _, meta = load_meta(tmp_path / "out")
    assert sorted(r["img_path"] for r in meta["test"]["colon"]) == sorted(
        f"Polyp_DataSet/TestDataset/{t['img_path']}" for t in truth)
    # Two candidates: no guess, the error lists both.
    generate("colondb", pack / "Other", size=2)
    with pytest.raises(WMoEError, match=r"several candidate dataset roots .*CVC-ColonDB.*CVC-ColonDB"):
        prepare("colondb", tmp_path / "raw", tmp_path / "out", progress=False)


def test_br35h_pred_folder_is_excluded(tmp_path):
    generate("br35h", tmp_path / "raw", size=SIZE)
    assert any((tmp_path / "raw" / "pred").iterdir())
    result = prepare("br35h", tmp_path / "raw", tmp_path / "out", progress=False)
    _, meta = load_meta(tmp_path / "out")
    assert not any(r["img_path"].startswith("pred/") for r in meta["test"]["brain"])
    assert {"path": "pred", "reason": "unlabeled images (Br35H pred/)"} in result.report["ignored"]


def test_visa_masks_are_not_binary_but_binarise(tmp_path):
    generate("visa", tmp_path / "raw", size=SIZE)
    report = prepare("visa", tmp_path / "raw", tmp_path / "out", progress=False).report
    values = {int(v) for v in report["mask_value_histogram"]}
    assert 0 in values and values - {0} <= {1, 2} and 255 not in values
    _, meta = load_meta(tmp_path / "out")
    assert {r["specie_name"] for recs in meta["test"].values() for r in recs} == {""}


def test_kvasir_jpeg_masks_use_the_threshold(tmp_path):
    generate("kvasir", tmp_path / "raw", size=SIZE)
    report = prepare("kvasir", tmp_path / "raw", tmp_path / "out", progress=False).report
    values = [int(v) for v in report["mask_value_histogram"]]
    assert any(0 < v < 255 for v in values)  # JPEG noise
    _, meta = load_meta(tmp_path / "out")
    assert meta["mask_threshold"] == 127


def test_synth_is_deterministic(tmp_path):
    generate("btad", tmp_path / "a", size=SIZE, seed=3)
    generate("btad", tmp_path / "b", size=SIZE, seed=3)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a)


def test_planted_defects_stand_out(tmp_path):
    """Inside a mask the image departs from the class's normal appearance more than outside it."""
    truth = generate("dtd", tmp_path / "raw", size=SIZE)
    for t in (t for t in truth if t["anomaly"]):
        img = np.asarray(Image.open(tmp_path / "raw" / t["img_path"]).convert("RGB"), dtype=np.float32)
        mask = np.asarray(Image.open(tmp_path / "raw" / t["mask_path"])) > 0
        normals = [t2 for t2 in truth if t2["cls_name"] == t["cls_name"] and not t2["anomaly"]]
        ref = np.asarray(Image.open(tmp_path / "raw" / normals[0]["img_path"]).convert("RGB"), dtype=np.float32)
        mean, std = ref.reshape(-1, 3).mean(0), ref.reshape(-1, 3).std(0) + 1
        z = np.abs((img - mean) / std).mean(axis=2)
        assert z[mask].mean() > z[~mask].mean()


def test_cli_synth_and_prepare(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    assert main(["synth", "isic", "--out", str(raw), "--size", "3"]) == 0
    assert main(["prepare", "isic", "--raw", str(raw), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "0 normal / 3 anomalous" in captured.out
    assert "skin: expected 0 normal / 379 anomalous, found 0 / 3" in captured.err
    before = {name: (out / name).read_bytes() for name in ("meta.json", "prepare.json")}
    assert main(["prepare", "isic", "--raw", str(raw), "--out", str(out), "--strict"]) == 2
    # The failed rerun leaves the previous pair as it was.
    assert {name: (out / name).read_bytes() for name in before} == before
