"""Broken inputs give the documented outcome: an error naming the file, or under skip_bad a skip."""

import json

import pytest

from wmoe_clip.data.meta import load_meta, write_meta
from wmoe_clip.data.prepare import prepare
from wmoe_clip.data.synth import generate
from wmoe_clip.errors import WMoEError


def _anomalous(truth, **where):
    return [t for t in truth if t["anomaly"] and t["split"] == "test" and all(t[k] == v for k, v in where.items())]


def _meta_pairs(out):
    _, meta = load_meta(out)
    return {r["img_path"]: r["mask_path"] for recs in meta["test"].values() for r in recs}


def test_missing_mask_is_an_error_then_a_skip_without_shifting_pairs(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    truth = generate("colondb", raw, size=6)
    victim = _anomalous(truth)[2]
    (raw / victim["mask_path"]).unlink()
    with pytest.raises(WMoEError, match=rf"missing mask: .*{victim['img_path'].split('/', 1)[1]}"):
        prepare("colondb", raw, out, progress=False)
    assert not (out / "meta.json").exists()
    result = prepare("colondb", raw, out, skip_bad=True, progress=False)
    pairs = _meta_pairs(out)
    assert victim["img_path"] not in pairs
    # Every remaining image keeps its own mask (a sort-order pairing would shift them).
    assert pairs == {t["img_path"]: t["mask_path"] for t in truth if t is not victim}
    assert [p.kind for p in result.problems] == ["missing mask"]
    assert json.loads((out / "prepare.json").read_text())["skipped"][0]["kind"] == "missing mask"


def test_orphan_mask(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    truth = generate("isic", raw, size=4)
    victim = _anomalous(truth)[0]
    (raw / victim["img_path"]).unlink()
    with pytest.raises(WMoEError, match=r"orphan mask: .*_Segmentation\.png: mask without an image"):
        prepare("isic", raw, out, progress=False)
    prepare("isic", raw, out, skip_bad=True, progress=False)
    assert len(_meta_pairs(out)) == 3


def test_orphan_mask_folder_in_mvtec_layout(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    truth = generate("dtd", raw, size=4)
    victim = _anomalous(truth, cls_name="Mesh_114")[0]
    (raw / victim["img_path"]).unlink()
    with pytest.raises(WMoEError, match=r"orphan mask: Mesh_114/ground_truth/bad/"):
        prepare("dtd", raw, out, progress=False)


def test_corrupt_image(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    truth = generate("btad", raw, size=4)
    victim = _anomalous(truth, cls_name="02")[0]
    (raw / victim["img_path"]).write_bytes(b"not an image at all")
    with pytest.raises(WMoEError, match=rf"unreadable image: {victim['img_path'].split('/', 1)[1]}"):
        prepare("btad", raw, out, progress=False)
    result = prepare("btad", raw, out, skip_bad=True, progress=False)
    assert victim["img_path"] not in _meta_pairs(out)
    assert result.report["counts"]["per_class"]["02"]["found"] == [2, 1]


def test_empty_mask_for_an_anomalous_image(tmp_path):
    from PIL import Image

    raw, out = tmp_path / "raw", tmp_path / "out"
    truth = generate("mvtec", raw, size=2)
    victim = _anomalous(truth, cls_name="wood")[0]
    with Image.open(raw / victim["mask_path"]) as m:
        Image.new("L", m.size, 0).save(raw / victim["mask_path"])
    with pytest.raises(WMoEError, match=r"empty mask: wood/ground_truth/"):
        prepare("mvtec", raw, out, progress=False)


@pytest.mark.parametrize("mode", ["LA", "P"])
def test_mask_read_as_the_loader_reads_it(tmp_path, mode):
    """A mask whose defect shows only in alpha, or only in palette indices of a black colour, is empty
    for the loader (alpha ignored, palette read by colour), so prepare must call it empty too."""
    import numpy as np
    from PIL import Image

    from wmoe_clip.data import AnomalyDataset

    raw, out = tmp_path / "raw", tmp_path / "out"
    truth = generate("mvtec", raw, size=2)
    victim = _anomalous(truth, cls_name="tile")[0]
    path = raw / victim["mask_path"]
    region = np.asarray(Image.open(path)) > 0
    if mode == "LA":
        img = Image.fromarray(np.dstack([np.zeros_like(region, np.uint8), region.astype(np.uint8) * 255]), "LA")
    else:
        img = Image.fromarray(region.astype(np.uint8), "P")
        img.putpalette([0, 0, 0, 0, 0, 0])  # index 1 is black as well
    img.save(path)
    with pytest.raises(WMoEError, match=r"empty mask: tile/ground_truth/"):
        prepare("mvtec", raw, out, progress=False)
    if mode == "P":  # with a visible colour for index 1 the same file is a mask for both readers
        img.putpalette([0, 0, 0, 255, 255, 255])
        img.save(path)
        prepare("mvtec", raw, out, progress=False)
        ds = AnomalyDataset(out, image_size=16, classes=["tile"])
        i = next(i for i, r in enumerate(ds.records) if r["img_path"] == victim["img_path"])
        assert ds[i]["mask"].sum() > 0


@pytest.mark.parametrize("key,folder", [("br35h", "maybe"), ("brainmri", "brain_tumor_dataset/unsure")])
def test_stray_folder_is_never_counted_as_anomalous(tmp_path, key, folder):
    raw, out = tmp_path / "raw", tmp_path / "out"
    truth = generate(key, raw, size=4)
    src = raw / next(t["img_path"] for t in truth if t["anomaly"])
    (raw / folder).mkdir()
    (raw / folder / "x.jpg").write_bytes(src.read_bytes())
    with pytest.raises(WMoEError, match=rf"stray folder: {folder.split('/')[-1]}: unlabelled folder"):
        prepare(key, raw, out, progress=False)
    prepare(key, raw, out, skip_bad=True, progress=False)
    assert not any(folder in p for p in _meta_pairs(out))


def test_endo_stray_and_ambiguous_folders(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    generate("endo", raw, size=3)
    base = raw / "EndoTect_2020_Segmentation_Test_Dataset"
    (base / "extra").mkdir()
    with pytest.raises(WMoEError, match=r"stray folder: extra"):
        prepare("endo", raw, out, progress=False)
    (base / "images").rename(base / "frames")
    with pytest.raises(WMoEError, match=r"cannot tell the image folder .*\['extra', 'frames'\]"):
        prepare("endo", raw, out, progress=False)
    (base / "extra").rmdir()
    prepare("endo", raw, out, progress=False)
    assert all(p.startswith("EndoTect_2020_Segmentation_Test_Dataset/frames/") for p in _meta_pairs(out))


def test_duplicate_stem_with_mixed_extensions(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    truth = generate("btad", raw, size=4)
    victim = raw / _anomalous(truth, cls_name="01")[0]["img_path"]
    victim.with_suffix(".png").write_bytes(victim.read_bytes())
    with pytest.raises(WMoEError, match=r"duplicate stem"):
        prepare("btad", raw, out, progress=False)


def test_visa_csv_row_without_its_image(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    truth = generate("visa", raw, size=2)
    victim = _anomalous(truth, cls_name="pcb3")[0]
    (raw / victim["img_path"]).unlink()
    with pytest.raises(WMoEError, match=r"missing image: pcb3/Data/Images/Anomaly/.*split_csv/1cls.csv line"):
        prepare("visa", raw, out, progress=False)


def test_headct_unlabelled_image(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    generate("headct", raw, size=4)
    src = raw / "head_ct" / "head_ct" / "000.png"
    (src.parent / "150.png").write_bytes(src.read_bytes())
    with pytest.raises(WMoEError, match=r"unlabelled image: head_ct/head_ct/150.png"):
        prepare("headct", raw, out, progress=False)


def test_wrong_layout_and_missing_raw(tmp_path):
    (tmp_path / "raw" / "a").mkdir(parents=True)
    (tmp_path / "raw" / "b").mkdir()
    with pytest.raises(WMoEError, match=r"does not hold the native layout of Kvasir.*holds: a, b.*kvasir-seg"):
        prepare("kvasir", tmp_path / "raw", tmp_path / "out", progress=False)
    with pytest.raises(WMoEError, match=r"does not exist.*Kaggle"):
        prepare("headct", tmp_path / "nowhere", tmp_path / "out", progress=False)


def _meta(**over):
    rec = {"img_path": "a/1.png", "mask_path": "", "cls_name": "c", "specie_name": "good", "anomaly": 0,
           "dataset_name": "mvtec"}
    meta = {"root": "raw", "dataset": "mvtec", "train": {}, "test": {"c": [rec]}}
    for k, v in over.items():
        if k in rec:
            rec[k] = v
        else:
            meta[k] = v
    return meta


@pytest.mark.parametrize("bad,match", [
    ({"Train": {}}, "Additional properties"),
    ({"img_path": "/abs/1.png"}, "relative POSIX path"),
    ({"img_path": "../up.png"}, "relative POSIX path"),
    ({"mask_path": "m.png"}, "normal image has a mask"),
    ({"cls_name": "d"}, "filed under class"),
    ({"anomaly": 2}, "anomaly"),
])
def test_meta_schema_rejects(tmp_path, bad, match):
    (tmp_path / "raw").mkdir()
    with pytest.raises(WMoEError, match=match):
        write_meta(tmp_path, _meta(**bad))


def test_load_meta_errors(tmp_path):
    with pytest.raises(WMoEError, match="run `wmoe-clip prepare"):
        load_meta(tmp_path)
    write_meta(tmp_path, _meta())
    with pytest.raises(WMoEError, match="raw root .* does not exist"):
        load_meta(tmp_path)
    (tmp_path / "raw").mkdir()
    root, meta = load_meta(tmp_path)
    assert root == (tmp_path / "raw").resolve() and meta["mask_threshold"] == 0
