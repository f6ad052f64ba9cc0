"""A user's own dataset (``prepare folder``) as users make them: CSVs in other text encodings, phone
photos with an EXIF orientation, very large JPEGs, odd class names, masks for only some defects."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from robustness_util import assert_one_line_error, run_cli, tree
from wmoe_clip.data.meta import load_meta

SIZE = 24


def _image(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _mask(path, box=(4, 4, 12, 12), size=(SIZE, SIZE)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros(size[::-1], dtype=np.uint8)
    m[box[1]:box[3], box[0]:box[2]] = 255
    Image.fromarray(m).save(path)


def csv_dataset(root, stem: str = "teil", cls: str = "screw") -> list[str]:
    """Images (two normal, two anomalous with masks) named with ``stem``; the CSV rows that list them."""
    rows = ["path,label,mask,class"]
    for i in range(2):
        _image(root / "img" / f"{stem}_ok{i}.png", i)
        rows.append(f"img/{stem}_ok{i}.png,normal,,{cls}")
    for i in range(2):
        _image(root / "img" / f"{stem}_bad{i}.png", 10 + i)
        _mask(root / "gt" / f"{stem}_bad{i}.png")
        rows.append(f"img/{stem}_bad{i}.png,anomaly,gt/{stem}_bad{i}.png,{cls}")
    return rows


# --------------------------------------------------------------------------------- CSV encodings


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be-bom"])
def test_a_csv_in_utf8_or_utf16_with_a_mark_is_read(tmp_path, capsys, encoding):
    root = tmp_path / "raw"
    rows = csv_dataset(root, stem="prüfteil")
    data = ("\r\n".join(rows) + "\r\n")
    raw = ("\ufeff" + data).encode("utf-16-be") if encoding == "utf-16-be-bom" else data.encode(encoding)
    (root / "labels.csv").write_bytes(raw)
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, "prepare", "folder", "--csv", root / "labels.csv", "--out", tmp_path / "out")
    assert rc == 0, err
    _, meta = load_meta(tmp_path / "out")
    assert sorted(r["img_path"] for r in meta["test"]["screw"]) == sorted(r.split(",")[0] for r in rows[1:])
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out")} == before


@pytest.mark.parametrize(("encoding", "why"), [("latin-1", "invalid start byte"),
                                                ("utf-16-le", "a NUL byte: UTF-16 without a byte-order mark?")])
def test_a_csv_in_another_encoding_is_one_line_naming_the_file_and_the_encodings(tmp_path, capsys, encoding, why):
    root = tmp_path / "raw"
    rows = csv_dataset(root, stem="prüfteil")
    (root / "labels.csv").write_bytes(("\n".join(rows) + "\n").encode(encoding))
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, "prepare", "folder", "--csv", root / "labels.csv", "--out", tmp_path / "out")
    line = assert_one_line_error(err, rc)
    assert f"{root / 'labels.csv'}: not a text encoding that is read (byte " in line and why in line
    assert "save the CSV as UTF-8 (with or without a byte-order mark) or UTF-16 with a byte-order mark" in line
    assert tree(tmp_path) == before


# ------------------------------------------------------------------------------ EXIF orientation


def _phone_photo(path, shown: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    """A JPEG whose EXIF orientation 6 says "rotate 90° clockwise to show": stored sideways, it shows
    as ``shown`` (width, height) with a white ``box`` (x0, y0, x1, y1) on black."""
    path.parent.mkdir(parents=True, exist_ok=True)
    view = np.zeros((shown[1], shown[0], 3), dtype=np.uint8)
    view[box[1]:box[3], box[0]:box[2]] = 255
    # Orientation 6 is shown by rotating the stored pixels 90° clockwise: store them rotated back.
    stored = Image.fromarray(np.rot90(view, k=1).copy())
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=95, exif=exif)


def _phone_dataset(root, shown, box):
    for i in range(2):
        _image(root / "part" / "good" / f"ok{i}.png", i)
    _phone_photo(root / "part" / "crack" / "photo.jpg", shown, box)
    _mask(root / "part" / "ground_truth" / "crack" / "photo.png", box, shown)  # drawn as the photo shows


@pytest.mark.parametrize("shown", [(24, 32), (32, 32)], ids=["portrait", "square"])
def test_a_phone_photo_and_its_mask_drawn_as_it_appears_are_read_aligned(tmp_path, capsys, shown):
    from wmoe_clip.data.dataset import AnomalyDataset

    box = (2, 3, 12, 10)  # off-centre: any rotation moves it
    _phone_dataset(tmp_path / "raw", shown, box)
    before = tree(tmp_path / "raw")
    rc, _, err = run_cli(capsys, "prepare", "folder", "--raw", tmp_path / "raw", "--out", tmp_path / "out")
    assert rc == 0, err
    assert ("1 file(s) carry an EXIF orientation and are read rotated as a viewer shows them "
            "(part/crack/photo.jpg)") in err
    report = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert report["exif_oriented"] == ["part/crack/photo.jpg"]
    dataset = AnomalyDataset(tmp_path / "out", "test", image_size=32)
    index = next(i for i, r in enumerate(dataset.records) if r["anomaly"])
    pixels, native = dataset.load_pixels(index)
    assert native == shown
    mask = dataset.load_mask(index, native).numpy()
    grey = pixels.numpy().mean(axis=-1)
    # The white box of the photo lies under the mask (squashing blurs only the box's border).
    assert mask.sum() > 0 and grey[mask].mean() > 200 and grey[~mask].mean() < 40
    assert tree(tmp_path / "raw") == before


def test_predict_reads_a_phone_photo_as_it_appears_and_says_so(trained, tmp_path, capsys):
    photo = tmp_path / "photo.jpg"
    _phone_photo(photo, (24, 32), (2, 3, 12, 10))
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", trained("btad") / "model.pt", photo,
                         "--out", tmp_path / "pred")
    assert rc == 0, err
    row = json.loads((tmp_path / "pred" / "scores.json").read_text())["images"][0]
    assert row["decoded_size"] == "24x32" and row["note"] == "EXIF orientation 6 applied"
    with Image.open(tmp_path / "pred" / row["heatmap"]) as heat:
        assert heat.size == (24, 32)
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith("pred")} == before


# ---------------------------------------------------------------------------------- huge JPEGs


def flat_jpeg(path, width: int, height: int) -> None:
    """A baseline grey JPEG of width×height flat mid-grey pixels, written directly as bytes (about
    0.75 byte per 8×8 block: a 20000² image is 4.7 MB and takes milliseconds, never held as pixels)."""
    import io
    import struct

    buf = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buf, format="JPEG")  # baseline, the standard Huffman tables
    data = buf.getvalue()
    sos = data.index(b"\xff\xda")
    head = bytearray(data[:sos + 2 + struct.unpack(">H", data[sos + 2:sos + 4])[0]])
    sof = head.index(b"\xff\xc0")
    struct.pack_into(">HH", head, sof + 5, height, width)
    blocks = -(-width // 8) * -(-height // 8)
    assert blocks % 4 == 0
    # Each block: DC difference 0 (code 00) then end-of-block (code 1010); four blocks are 3 bytes.
    path.write_bytes(bytes(head) + b"\x28\xa2\x8a" * (blocks // 4) + b"\xff\xd9")


def test_the_flat_jpeg_maker_writes_what_it_says(tmp_path):
    flat_jpeg(tmp_path / "f.jpg", 64, 48)
    with Image.open(tmp_path / "f.jpg") as im:
        assert im.size == (64, 48) and im.format == "JPEG"
        assert np.array_equal(np.asarray(im), np.full((48, 64), 128, dtype=np.uint8))


def test_predict_decodes_a_20000_square_jpeg_at_reduced_scale_under_max_pixels(trained, tmp_path, capsys):
    huge = tmp_path / "huge.jpg"
    flat_jpeg(huge, 20000, 20000)
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", trained("btad") / "model.pt", huge,
                         "--out", tmp_path / "pred", "--max-pixels", "7000000")
    assert rc == 0, err
    row = json.loads((tmp_path / "pred" / "scores.json").read_text())["images"][0]
    assert row["status"] == "scored"
    # 20000/2 and 20000/4 squared are over 7 M pixels; 1/8 is the first scale that fits.
    assert row["decoded_size"] == "2500x2500"
    assert row["note"] == "20000x20000 is over --max-pixels 7000000: decoded at 1/8 scale"
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith("pred")} == before


def test_prepare_reads_a_20000_square_jpeg_at_reduced_scale(tmp_path, capsys):
    root = tmp_path / "raw"
    rows = csv_dataset(root)
    flat_jpeg(root / "img" / "scan.jpg", 20000, 20000)
    rows.append("img/scan.jpg,normal,,screw")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, "prepare", "folder", "--csv", root / "labels.csv", "--out", tmp_path / "out")
    assert rc == 0, err
    _, meta = load_meta(tmp_path / "out")
    assert "img/scan.jpg" in {r["img_path"] for r in meta["test"]["screw"]}
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith("out")} == before


# ------------------------------------------------------------------- class names, missing masks


@pytest.mark.parametrize("cls", ["../../evil/x", "a/b", "..", "screw:v2"], ids=repr)
def test_a_class_name_that_is_no_metric_name_is_refused_at_prepare(tmp_path, capsys, cls):
    root = tmp_path / "raw"
    rows = csv_dataset(root)
    rows.append(f"img/teil_ok0.png,normal,,{cls}".replace("teil_ok0", "teil_ok9"))
    _image(root / "img" / "teil_ok9.png", 9)
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, "prepare", "folder", "--csv", root / "labels.csv", "--out", tmp_path / "out")
    line = assert_one_line_error(err, rc)
    assert f"{root / 'labels.csv'}: class name {cls!r}: use letters, digits, '_', '-', '.' and spaces" in line
    assert tree(tmp_path) == before


def test_a_class_folder_name_with_odd_characters_is_refused(tmp_path, capsys):
    raw = tmp_path / "raw"
    for name in ("screw", "nut (old)"):
        _image(raw / name / "good" / "ok.png", 0)
        _image(raw / name / "crack" / "bad.png", 1)
        _mask(raw / name / "ground_truth" / "crack" / "bad.png")
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, "prepare", "folder", "--raw", raw, "--out", tmp_path / "out")
    assert "class name 'nut (old)'" in assert_one_line_error(err, rc)
    assert tree(tmp_path) == before


def test_masks_that_exist_are_kept_and_the_unmasked_images_are_counted(trained, tmp_path, capsys):
    root = tmp_path / "raw"
    rows = csv_dataset(root)  # two normal, two anomalous with masks
    _image(root / "img" / "teil_bad2.png", 12)
    rows.append("img/teil_bad2.png,anomaly,,screw")  # its defect was never outlined
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    before = tree(root)
    rc, _, err = run_cli(capsys, "prepare", "folder", "--csv", root / "labels.csv", "--out", tmp_path / "prep",
                         "--name", "lot7")
    assert rc == 0, err
    warning = ("class 'screw': 1 of 3 anomalous images have no mask (img/teil_bad2.png); they are left out of the "
               "pixel metrics, which use the 2 with a mask and the normal images; the image metrics use all")
    assert warning in err
    report = json.loads((tmp_path / "prep" / "prepare.json").read_text())
    assert warning in report["warnings"] and report["class_levels"] == {"screw": ["image", "pixel"]}
    _, meta = load_meta(tmp_path / "prep")
    assert sorted(r["mask_path"] for r in meta["test"]["screw"] if r["anomaly"]) == ["", "gt/teil_bad0.png",
                                                                                      "gt/teil_bad1.png"]
    out = tmp_path / "eval.json"
    rc, _, err = run_cli(capsys, "evaluate", "--checkpoint", trained("btad") / "model.pt", "--target", "lot7",
                         "--data", tmp_path / "prep", "--out", out, "--no-tracking", "--quiet")
    assert rc == 0, err
    doc = json.loads(out.read_text())
    screw = doc["per_class"]["screw"]
    assert (screw["n_images"], screw["n_anomalous"], screw["n_anomalous_without_mask"]) == (5, 3, 1)
    assert doc["counts"]["n_anomalous_without_mask"] == 1
    assert screw["pixel"]["auroc"] is not None and screw["image"]["auroc"] is not None
    assert doc["image_scores"]["screw"]["labels"].count(1) == 3  # the image metrics use all three
    assert tree(root) == before


def test_an_image_over_the_budget_is_refused_from_its_header_alone(tmp_path, monkeypatch):
    from PIL import PngImagePlugin

    from wmoe_clip.data.images import ImageTooLarge, read_image

    Image.new("L", (400, 300)).save(tmp_path / "big.png")

    def no_decoding(self):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    with pytest.raises(ImageTooLarge, match=r"^400x300 = 120000 pixels is over the limit of 50000 pixels and was "
                                            "not decoded$"):
        read_image(tmp_path / "big.png", max_pixels=50_000)
