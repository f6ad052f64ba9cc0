import csv
import json

from PIL import Image

from wmoe_clip.cli import main


def test_predict_scores_good_files_and_reports_bad_ones(trained, tmp_path, capsys):
    _, out = trained
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), (120, 60, 30)).save(good)
    grey = tmp_path / "grey.tif"
    Image.new("L", (20, 20), 90).save(grey)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    missing = tmp_path / "missing.png"
    rc = main(["predict", "--checkpoint", str(out / "model.pt"), str(good), str(bad), str(grey), str(missing),
               "--out", str(tmp_path / "pred")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "bad.jpg: not a readable image" in err and "missing.png: no such file" in err
    rows = json.loads((tmp_path / "pred" / "scores.json").read_text())["images"]
    assert [r["error"] is None for r in rows] == [True, False, True, False]
    for r in (rows[0], rows[2]):
        assert 0.0 <= r["image_score"] <= 1.0
        with Image.open(tmp_path / "pred" / r["heatmap"]) as heat:
            assert heat.size == Image.open(tmp_path / r["path"].split("/")[-1]).size
    with open(tmp_path / "pred" / "scores.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [t["path"] for t in table] == [r["path"] for r in rows]
    assert float(table[0]["image_score"]) == rows[0]["image_score"]


def test_predict_with_no_readable_file_is_an_error(trained, tmp_path, capsys):
    _, out = trained
    bad = tmp_path / "bad.png"
    bad.write_text("x")
    assert main(["predict", "--checkpoint", str(out / "model.pt"), str(bad), "--out", str(tmp_path / "p")]) == 2
    assert "none of the 1 file(s)" in capsys.readouterr().err
