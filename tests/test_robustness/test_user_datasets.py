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
