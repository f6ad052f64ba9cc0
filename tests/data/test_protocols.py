"""synth -> prepare for the official KSDD2 archive and the Kaggle DAGM release: detection of the
protocol from the layout, --protocol, and the exact records against what synth wrote."""

import json

import numpy as np
import pytest
from PIL import Image

from wmoe_clip.cli import main
from wmoe_clip.data.meta import dataset_spec, load_meta
from wmoe_clip.data.prepare import prepare, prepare_custom
from wmoe_clip.data.synth import generate
from wmoe_clip.errors import WMoEError

SIZE = 4


def _records(meta, split="test"):
    return sorted((r["cls_name"], r["img_path"], r["mask_path"], r["anomaly"]) for recs in meta[split].values()
                  for r in recs)


def _truth(truth, split="test"):
    return sorted((t["cls_name"], t["img_path"], t["mask_path"], t["anomaly"]) for t in truth if t["split"] == split)


@pytest.mark.parametrize("key, protocol", [("ksdd2", "official"), ("dagm", "kaggle"),
                                          ("ksdd2", "bayes-pfl"), ("dagm", "bayes-pfl")])
def test_protocol_is_detected_from_the_layout(key, protocol, tmp_path):
    truth = generate(key, tmp_path / "raw", size=SIZE, seed=2, protocol=protocol)
    result = prepare(key, tmp_path / "raw", tmp_path / "out", progress=False)
    _, meta = load_meta(tmp_path / "out")
    assert meta["protocol"] == result.report["protocol"] == protocol
    assert _records(meta) == _truth(truth)
    assert _records(meta, "train") == [] and result.problems == []


def test_ksdd2_official_reads_the_gt_not_the_file_presence(tmp_path):
    truth = generate("ksdd2", tmp_path / "raw", size=6, seed=3, protocol="official")
    raw = tmp_path / "raw"
    # Every image has a GT; a normal image's GT has no defect pixel and is read as normal.
    test_images = sorted(p.name for p in (raw / "test").glob("*.png") if not p.stem.endswith("_GT"))
    assert all((raw / "test" / f"{n[:-4]}_GT.png").is_file() for n in test_images)
    normal = [t for t in truth if t["split"] == "test" and not t["anomaly"]]
    for t in normal:
        with Image.open(raw / t["img_path"].replace(".png", "_GT.png")) as gt:
            assert not np.asarray(gt).any()
    result = prepare("ksdd2", raw, tmp_path / "out", progress=False)
    _, meta = load_meta(tmp_path / "out")
    assert _records(meta) == _truth(truth)
    assert {r["mask_path"] for r in meta["test"]["Metal"] if r["anomaly"]} == {
        t["img_path"].replace(".png", "_GT.png") for t in truth if t["split"] == "test" and t["anomaly"]}
    # The official archive's duplicate without a GT is listed, not read; train/ is not the test set.
    ignored = {i["path"]: i["reason"] for i in result.report["ignored"]}
    assert "train" in ignored and result.report["counts"]["per_class"]["Metal"]["expected"] == [894, 110]
    # An unmarked GT turned into a defect makes its image anomalous, paired by name.
    victim = normal[0]["img_path"]
    gt = raw / victim.replace(".png", "_GT.png")
    with Image.open(gt) as m:
        arr = np.asarray(m).copy()
    arr[2:5, 2:5] = 255
    Image.fromarray(arr).save(gt)
    prepare("ksdd2", raw, tmp_path / "out", progress=False)
    _, meta = load_meta(tmp_path / "out")
    rec = next(r for r in meta["test"]["Metal"] if r["img_path"] == victim)
    assert (rec["anomaly"], rec["mask_path"], rec["specie_name"]) == (1, gt.relative_to(raw).as_posix(), "defect")


def test_ksdd2_official_missing_gt_is_a_problem(tmp_path):
    truth = generate("ksdd2", tmp_path / "raw", size=SIZE, protocol="official")
    victim = next(t for t in truth if t["split"] == "test")
    (tmp_path / "raw" / victim["img_path"].replace(".png", "_GT.png")).unlink()
    with pytest.raises(WMoEError, match=r"missing mask: test/\d+\.png: no \d+_GT\.png beside it"):
        prepare("ksdd2", tmp_path / "raw", tmp_path / "out", progress=False)


def test_ksdd2_balanced_draw_is_all_positives_and_as_many_seeded_negatives(tmp_path):
    truth = generate("ksdd2", tmp_path / "raw", size=8, seed=4, protocol="official-balanced")
    result = prepare("ksdd2", tmp_path / "raw", tmp_path / "out", protocol="official-balanced", progress=False)
    _, meta = load_meta(tmp_path / "out")
    assert meta["protocol"] == "official-balanced" and result.report["balance_seed"] == 0
    got = meta["test"]["Metal"]
    positives = sorted(t["img_path"] for t in truth if t["anomaly"])  # train and test
    negatives = sorted(t["img_path"] for t in truth if not t["anomaly"])
    assert sorted(r["img_path"] for r in got if r["anomaly"]) == positives
    # The documented draw, re-done here: negatives in path order, default_rng(seed).choice without replacement.
    picked = np.random.default_rng(0).choice(len(negatives), size=len(positives), replace=False)
    assert sorted(r["img_path"] for r in got if not r["anomaly"]) == sorted(negatives[i] for i in picked)
    # Same data, same draw.
    prepare("ksdd2", tmp_path / "raw", tmp_path / "out2", protocol="official-balanced", progress=False)
    assert load_meta(tmp_path / "out2")[1]["test"] == meta["test"]


def test_dagm_labels_txt_flags_win_over_file_presence(tmp_path):
    truth = generate("dagm", tmp_path / "raw", size=SIZE, seed=5, protocol="kaggle")
    test = tmp_path / "raw" / "DAGM_KaggleUpload" / "Class3" / "Test"
    labels = test / "Label" / "Labels.txt"
    lines = labels.read_text().splitlines()
    assert lines[0] == "3" and all(len(line.split("\t")) == 5 for line in lines[1:])
    rows = [line.split("\t") for line in lines[1:]]
    defective = next(r for r in rows if r[1] == "1")
    normal = next(r for r in rows if r[1] == "0")
    # A defective image flagged 0 is normal although its label file exists ...
    defective[1] = "0"
    # ... and a label file beside a flag-0 image does not make it defective.
    Image.new("L", (64, 64), 255).save(test / "Label" / f"{normal[2][:-4]}_label.PNG")
    labels.write_bytes(("\ufeff" + "\r\n".join([lines[0], *("\t".join(r) for r in rows)]) + "\r\n").encode())
    result = prepare("dagm", tmp_path / "raw", tmp_path / "out", progress=False)
    _, meta = load_meta(tmp_path / "out")
    base = "DAGM_KaggleUpload/Class3/Test/"
    flipped = base + defective[2]
    expected = [(c, p, "" if p == flipped else m, 0 if p == flipped else a) for c, p, m, a in _truth(truth)]
    assert _records(meta) == sorted(expected)
    ignored = {i["path"] for i in result.report["ignored"]}
    assert {f"Class3/Test/Label/{defective[4]}", f"Class3/Test/Label/{normal[2][:-4]}_label.PNG"} <= ignored
    assert list(meta["test"]) == [f"Class{i}" for i in range(1, 11)]
    assert result.report["counts"]["total"]["expected"] == [6996, 1054]


def test_dagm_flagged_image_without_its_label_file_is_a_problem(tmp_path):
    truth = generate("dagm", tmp_path / "raw", size=SIZE, protocol="kaggle")
    victim = next(t for t in truth if t["anomaly"])
    (tmp_path / "raw" / victim["mask_path"]).unlink()
    with pytest.raises(WMoEError, match=r"missing mask: .*flagged defective in .*Labels\.txt"):
        prepare("dagm", tmp_path / "raw", tmp_path / "out", progress=False)


def test_dagm_per_class_hci_zips_extracted_into_their_own_folders(tmp_path):
    truth = generate("dagm", tmp_path / "gen", size=SIZE, protocol="kaggle")
    src = tmp_path / "gen" / "DAGM_KaggleUpload"
    for cls in ("Class1", "Class2"):
        (tmp_path / "raw" / cls).mkdir(parents=True)
        (src / cls).rename(tmp_path / "raw" / cls / cls)
    result = prepare("dagm", tmp_path / "raw", tmp_path / "out", progress=False)
    _, meta = load_meta(tmp_path / "out")
    assert list(meta["test"]) == ["Class1", "Class2"] and len(result.missing_classes) == 8
    expected = {t["img_path"].replace("DAGM_KaggleUpload/Class1/", "Class1/Class1/")
                .replace("DAGM_KaggleUpload/Class2/", "Class2/Class2/") for t in truth
                if t["split"] == "test" and t["cls_name"] in ("Class1", "Class2")}
    assert {r["img_path"] for recs in meta["test"].values() for r in recs} == expected


def test_protocol_option_overrides_and_checks_the_layout(tmp_path, capsys):
    generate("ksdd2", tmp_path / "raw", size=SIZE, protocol="official")
    out = tmp_path / "out"
    with pytest.raises(WMoEError, match="does not hold the native layout of KSDD2"):
        prepare("ksdd2", tmp_path / "raw", out, protocol="bayes-pfl", progress=False)
    with pytest.raises(WMoEError, match="unknown protocol 'kaggle'"):
        prepare("ksdd2", tmp_path / "raw", out, protocol="kaggle", progress=False)
    assert main(["prepare", "ksdd2", "--raw", str(tmp_path / "raw"), "--out", str(out),
                 "--protocol", "official-balanced"]) == 0
    assert "ksdd2 (official-balanced): " in capsys.readouterr().out
    assert json.loads((out / "prepare.json").read_text())["protocol"] == "official-balanced"


def test_cli_synth_protocol(tmp_path, capsys):
    assert main(["synth", "dagm", "--protocol", "kaggle", "--out", str(tmp_path / "raw"), "--size", "2"]) == 0
    assert "dagm (kaggle): wrote 10 normal / 10 anomalous" in capsys.readouterr().out
    assert (tmp_path / "raw" / "SYNTHETIC").read_text().strip().endswith("--protocol kaggle")
    assert main(["synth", "mvtec", "--protocol", "kaggle", "--out", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("command", ["synth", "prepare"])
def test_the_former_variant_option_still_works_with_a_note(command, tmp_path, capsys):
    generate("ksdd2", tmp_path / "raw", size=SIZE, protocol="official")
    args = (["synth", "ksdd2", "--out", str(tmp_path / "raw2"), "--size", "2"] if command == "synth"
            else ["prepare", "ksdd2", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out")])
    assert main([*args, "--variant", "official-balanced"]) == 0
    captured = capsys.readouterr()
    assert "ksdd2 (official-balanced): " in captured.out
    notes = [line for line in captured.err.splitlines() if "--variant" in line]
    assert len(notes) == 1 and notes[0].startswith("note: --variant is now --protocol")


def test_a_manifest_of_the_former_format_is_read_with_its_protocol(tmp_path):
    """meta.json files written before the rename carry ``variant`` (and, for a user's dataset, the
    description as ``custom.protocol``); they load as the current ones."""
    generate("ksdd2", tmp_path / "raw", size=SIZE, protocol="official")
    prepare("ksdd2", tmp_path / "raw", tmp_path / "out", progress=False)
    path = tmp_path / "out" / "meta.json"
    old = json.loads(path.read_text())
    old["variant"] = old.pop("protocol")
    path.write_text(json.dumps(old))
    _, meta = load_meta(tmp_path / "out")
    assert meta["protocol"] == "official" and "variant" not in meta
    assert dataset_spec(meta).totals == (894, 110)

    generate("folder", tmp_path / "parts", size=2)
    prepare_custom("parts", tmp_path / "own", raw=tmp_path / "parts", progress=False)
    path = tmp_path / "own" / "meta.json"
    old = json.loads(path.read_text())
    old["variant"] = old.pop("protocol")
    old["custom"]["protocol"] = old["custom"].pop("description")
    path.write_text(json.dumps(old))
    _, meta = load_meta(tmp_path / "own")
    assert meta["custom"]["description"] == "user dataset: folder parts"
    assert dataset_spec(meta).description == "user dataset: folder parts"
