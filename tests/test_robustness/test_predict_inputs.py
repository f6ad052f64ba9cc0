"""predict: one bad, huge or strange input never stops the others."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

from PIL import Image

from robustness_util import assert_one_line_error, run_cli, tree

WMOE_CLIP = str(Path(sys.executable).parent / "wmoe-clip")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb(path: Path, side: int = 15000) -> Path:
    """A 1-bit palette PNG of side² pixels that compresses to ~27 KB (written row by row, never in memory)."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 3, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"PLTE", b"\0\0\0\xff\xff\xff")
                     + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))
    return path


def _image(path: Path, size: tuple[int, int], fmt: str = "PNG") -> Path:
    Image.new("RGB", size, (30, 140, 200)).save(path, format=fmt)
    return path


def test_a_batch_with_a_bomb_a_fifo_a_folder_and_an_oversized_image_scores_the_rest(trained, tmp_path):
    good = _image(tmp_path / "good.png", (40, 30))
    bomb = decompression_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 40_000
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    big_png = _image(tmp_path / "big.png", (100, 100))
    big_jpeg = _image(tmp_path / "big.jpg", (96, 80), "JPEG")
    out = tmp_path / "pred"
    inputs = [good, bomb, fifo, tmp_path, big_png, big_jpeg]
    # A subprocess with a deadline: reading the FIFO would block forever.
    proc = subprocess.run([WMOE_CLIP, "predict", "--checkpoint", str(trained("btad") / "model.pt"),
                           *map(str, inputs), "--out", str(out), "--max-pixels", "5000"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    rows = json.loads((out / "scores.json").read_text())["images"]
    assert [r["path"] for r in rows] == [str(p) for p in inputs]
    assert [r["status"] for r in rows] == ["scored", "skipped", "skipped", "skipped", "skipped", "scored"]
    errors = [r["error"] for r in rows]
    # The bomb's header is enough: its size is over --max-pixels, which replaces PIL's own limit.
    assert errors[1] == (f"{bomb}: 15000x15000 = 225000000 pixels is over --max-pixels 5000 and was not decoded; "
                         "shrink the image or raise --max-pixels")
    assert errors[2] == f"{fifo}: a FIFO, not an image file; not opened"
    assert errors[3] == f"{tmp_path}: a folder, not an image file; not opened"
    assert errors[4] == (f"{big_png}: 100x100 = 10000 pixels is over --max-pixels 5000 and was not decoded; "
                         "shrink the image or raise --max-pixels")
    # The JPEG decoder itself reduced the large JPEG: 96x80 at 1/2 scale fits 5000 pixels.
    assert rows[5]["decoded_size"] == "48x40"
    assert rows[5]["note"] == "96x80 is over --max-pixels 5000: decoded at 1/2 scale"
    for row in (rows[0], rows[5]):
        assert 0.0 <= row["image_score"] <= 1.0
        with Image.open(out / row["heatmap"]) as heat:
            assert heat.size == tuple(int(v) for v in row["decoded_size"].split("x"))
    csv_lines = (out / "scores.csv").read_text().splitlines()
    assert csv_lines[0].split(",")[:2] == ["path", "status"] and len(csv_lines) == 1 + len(inputs)
    for path in (bomb, fifo, big_png):
        assert f"wmoe-clip predict: skipped {path}" in proc.stderr


def test_a_rerun_leaves_no_stale_heatmap(trained, tmp_path, capsys):
    images = [_image(tmp_path / f"{name}.png", (20, 20)) for name in ("a", "b", "c")]
    out = tmp_path / "pred"
    checkpoint = trained("btad") / "model.pt"
    assert run_cli(capsys, "predict", "--checkpoint", checkpoint, *images, "--out", out)[0] == 0
    assert sorted(p.name for p in (out / "heatmaps").iterdir()) == ["0000_a.png", "0001_b.png", "0002_c.png"]
    (out / "notes.txt").write_text("the user's own file beside the outputs")
    assert run_cli(capsys, "predict", "--checkpoint", checkpoint, images[2], "--out", out)[0] == 0
    assert sorted(p.name for p in (out / "heatmaps").iterdir()) == ["0000_c.png"]
    assert sorted(p.name for p in out.iterdir()) == ["heatmaps", "notes.txt", "scores.csv", "scores.json"]
    rows = json.loads((out / "scores.json").read_text())["images"]
    assert [(r["path"], r["heatmap"]) for r in rows] == [(str(images[2]), "heatmaps/0000_c.png")]


def test_a_heatmap_folder_with_foreign_files_is_left_alone(trained, tmp_path, capsys):
    out = tmp_path / "pred"
    (out / "heatmaps").mkdir(parents=True)
    (out / "heatmaps" / "holiday.jpg").write_bytes(b"a photo")
    image = _image(tmp_path / "a.png", (20, 20))
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", trained("btad") / "model.pt", image, "--out", out)
    line = assert_one_line_error(err, rc)
    assert f"{out / 'heatmaps'} holds files predict did not write (holiday.jpg)" in line
    assert tree(tmp_path) == before


def test_a_text_file_given_as_checkpoint_is_named(tmp_path, capsys):
    text = tmp_path / "model.pt"
    text.write_text("epoch 1: loss 0.3\n")
    image = _image(tmp_path / "a.png", (20, 20))
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", text, image, "--out", tmp_path / "p")
    line = assert_one_line_error(err, rc)
    assert line == (f"wmoe-clip predict: error: {text} is not a wmoe-clip checkpoint: it is not a file written by "
                    "torch.save (it starts with b'epoc'); give the model.pt written by wmoe-clip train")
    assert not (tmp_path / "p").exists()


def test_max_pixels_is_validated(trained, tmp_path, capsys):
    image = _image(tmp_path / "a.png", (20, 20))
    rc, _, err = run_cli(capsys, "predict", "--checkpoint", trained("btad") / "model.pt", image,
                         "--out", tmp_path / "p", "--max-pixels", "0")
    assert "--max-pixels must be at least 1, got 0" in assert_one_line_error(err, rc)
    assert not (tmp_path / "p").exists()
