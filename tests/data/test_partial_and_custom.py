"""Data as users have it: a partial MVTec download, and their own datasets (a folder, a CSV)."""

import json
import shutil

import pytest

from wmoe_clip.cli import main
from wmoe_clip.data import registry
from wmoe_clip.data.meta import dataset_spec, load_meta
from wmoe_clip.data.prepare import prepare, prepare_custom
from wmoe_clip.data.synth import generate
from wmoe_clip.errors import WMoEError

KEPT = ("bottle", "wood")


def partial_mvtec(raw):
    """A MVTec AD download of two of the 15 per-class archives."""
    truth = generate("mvtec", raw, size=2)
    for cls in registry.get("mvtec").classes:
        if cls not in KEPT:
            shutil.rmtree(raw / cls)
    return [t for t in truth if t["cls_name"] in KEPT]


def test_partial_mvtec_prepares_with_a_warning_and_strict_refuses_it(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    truth = partial_mvtec(raw)
    assert main(["prepare", "mvtec", "--raw", str(raw), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: mvtec: 13 registry class(es) not found, prepared without them" in err and "cable" in err
    _, meta = load_meta(out)
    assert list(meta["test"]) == list(KEPT)
    assert sorted(r["img_path"] for recs in meta["test"].values() for r in recs) == sorted(
        t["img_path"] for t in truth if t["split"] == "test")
    report = json.loads((out / "prepare.json").read_text())
    missing = [c for c in registry.get("mvtec").classes if c not in KEPT]
    assert report["missing_classes"] == missing
    assert f"13 of 15 classes missing: {', '.join(missing)}" in report["count_differences"]
    # Present classes are still checked against their own counts (20 + 19 normal, 63 + 60 anomalous).
    assert report["counts"]["total"] == {"expected": [39, 123], "found": [2, 2]}
    before = {name: (out / name).read_bytes() for name in ("meta.json", "prepare.json")}
    assert main(["prepare", "mvtec", "--raw", str(raw), "--out", str(out), "--strict"]) == 2
    assert "13 of 15 classes missing" in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in before} == before  # the failed rerun keeps the pair


def _custom_truth(truth):
    """What prepare must make of synth's folder: every record with its own mask, where it has one."""
    return sorted((t["cls_name"], t["img_path"], t["mask_path"], t["anomaly"]) for t in truth)


@pytest.mark.parametrize("protocol", [None, "csv"])
def test_own_dataset_with_a_missing_mask_a_stray_file_and_an_image_only_class(protocol, tmp_path):
    raw, out = tmp_path / "parts", tmp_path / "out"
    truth = generate("folder", raw, size=4, seed=1, protocol=protocol)
    kind = {"raw": raw} if protocol is None else {"csv_path": raw / "labels.csv"}
    result = prepare_custom("parts", out, **kind, progress=False)
    root, meta = load_meta(out)
    assert root == raw.resolve() and meta["dataset"] == "parts" and meta["protocol"] is None
    got = sorted((r["cls_name"], r["img_path"], r["mask_path"], r["anomaly"]) for recs in meta["test"].values()
                 for r in recs)
    assert got == _custom_truth(truth)
    # Masks paired by name: screw's masks are <stem>.png and <stem>_mask.png alike.
    screw = [r for r in meta["test"]["screw"] if r["anomaly"]]
    assert all(r["mask_path"] for r in screw)
    if protocol is None:
        assert {r["mask_path"].endswith("_mask.png") for r in screw} == {True, False}
    # Derived capabilities: both levels overall; per class what its data allows.
    assert meta["custom"] == {"display_name": "parts", "image_metrics": True, "pixel_metrics": True,
                              "description": meta["custom"]["description"]}
    # cable keeps the masks it has: one of its anomalous images has none and is named.
    assert result.report["class_levels"] == {"screw": ["image", "pixel"], "plate": ["image"],
                                             "cable": ["image", "pixel"], "weld": ["pixel"]}
    unmasked = [t["img_path"] for t in truth if t["cls_name"] == "cable" and t["anomaly"] and not t["mask_path"]]
    n_cable = sum(t["anomaly"] for t in truth if t["cls_name"] == "cable")
    assert len(unmasked) == 1
    assert f"class 'cable': 1 of {n_cable} anomalous images have no mask ({unmasked[0]}); they are left out of " \
           f"the pixel metrics, which use the {n_cable - 1} with a mask" in " ".join(result.warnings)
    stray = "README.txt" if protocol is None else "images/unlisted.png"
    assert stray in {i["path"] for i in result.report["ignored"]}
    spec = dataset_spec(meta)
    assert spec.custom and spec.key == "parts" and spec.classes == {c: None for c in meta["test"]}


def test_derived_levels_image_only_and_pixel_only(tmp_path):
    raw = tmp_path / "parts"
    generate("folder", raw, size=2)
    only_images = tmp_path / "only_images"
    shutil.copytree(raw / "plate", only_images / "plate")
    prepare_custom("plates", tmp_path / "a", raw=only_images, progress=False)
    assert load_meta(tmp_path / "a")[1]["custom"]["pixel_metrics"] is False
    only_anomalies = tmp_path / "only_anomalies"
    shutil.copytree(raw / "weld", only_anomalies / "weld")
    prepare_custom("welds", tmp_path / "b", raw=only_anomalies, progress=False)
    custom = load_meta(tmp_path / "b")[1]["custom"]
    assert (custom["image_metrics"], custom["pixel_metrics"]) == (False, True)
    # One class in the folder itself (good/ beside the defect folders) is named after the dataset.
    prepare_custom("single", tmp_path / "c", raw=raw / "screw", progress=False)
    assert list(load_meta(tmp_path / "c")[1]["test"]) == ["single"]


def test_own_dataset_errors_name_the_file(tmp_path):
    raw = tmp_path / "parts"
    truth = generate("folder", raw, size=2, protocol="csv")
    csv_path = raw / "labels.csv"
    text = csv_path.read_text()
    csv_path.write_text(text + "images/gone.png,anomaly,,screw\n")
    with pytest.raises(WMoEError, match=r"missing image: images/gone\.png: listed in labels\.csv row"):
        prepare_custom("parts", tmp_path / "out", csv_path=csv_path, progress=False)
    csv_path.write_text(text + text.splitlines()[1] + "\n")
    with pytest.raises(WMoEError, match=r"bad csv row: .*labels\.csv row \d+ lists it a second time"):
        prepare_custom("parts", tmp_path / "out", csv_path=csv_path, progress=False)
    csv_path.write_text(text + "../outside.png,0,,screw\n")
    with pytest.raises(WMoEError, match=r"bad csv row: labels\.csv: labels\.csv row \d+"):
        prepare_custom("parts", tmp_path / "out", csv_path=csv_path, progress=False)
    # Without a header the columns are positional; labels may be words.
    rows = [line for line in text.splitlines()[1:]]
    csv_path.write_text("\n".join(rows) + "\n")
    prepare_custom("parts", tmp_path / "out", csv_path=csv_path, progress=False)
    assert sum(len(r) for r in load_meta(tmp_path / "out")[1]["test"].values()) == len(truth)
    with pytest.raises(WMoEError, match="registry dataset"):
        prepare_custom("mvtec", tmp_path / "out", csv_path=csv_path, progress=False)
    folder = tmp_path / "folder"
    generate("folder", folder, size=2)
    orphan = next(folder.glob("screw/ground_truth/*/*"))
    orphan.rename(folder / "screw" / "ground_truth" / orphan.parent.name / "zzz.png")
    with pytest.raises(WMoEError, match="orphan mask: screw/ground_truth/.*/zzz.png"):
        prepare_custom("parts", tmp_path / "out", raw=folder, progress=False)


def test_cli_prepare_folder(tmp_path, capsys):
    raw = tmp_path / "My Parts"
    generate("folder", raw, size=2)
    out = tmp_path / "out"
    assert main(["prepare", "folder", "--raw", str(raw), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "my_parts: 3 normal / 5 anomalous test images" in captured.out
    assert "warning: my_parts: class 'cable'" in captured.err and "README.txt" in captured.err
    generate("folder", tmp_path / "csv", size=2, protocol="csv")
    # A .csv given as --raw is read as --csv (the workflow passes every custom target as --raw).
    assert main(["prepare", "folder", "--raw", str(tmp_path / "csv" / "labels.csv"), "--out", str(out),
                 "--name", "line3"]) == 0
    assert load_meta(out)[1]["dataset"] == "line3"
    assert main(["prepare", "mvtec", "--csv", "x.csv", "--out", str(out)]) == 2
    assert main(["prepare", "folder", "--raw", str(raw), "--out", str(out), "--strict"]) == 2


def test_an_mvtec_class_folder_is_a_custom_dataset(tmp_path):
    truth = generate("mvtec", tmp_path / "mvtec", size=2)
    result = prepare_custom("bottles", tmp_path / "out", raw=tmp_path / "mvtec" / "bottle", progress=False)
    _, meta = load_meta(tmp_path / "out")
    expected = sorted((t["img_path"].removeprefix("bottle/"), t["mask_path"].removeprefix("bottle/"), t["anomaly"])
                      for t in truth if t["cls_name"] == "bottle" and t["split"] == "test")
    assert sorted((r["img_path"], r["mask_path"], r["anomaly"]) for r in meta["test"]["bottles"]) == expected
    assert {"path": "train", "reason": "besides test/ and ground_truth/, a class folder's entries are not used"} \
        in result.report["ignored"]
