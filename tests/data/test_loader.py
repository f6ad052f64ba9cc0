"""The torch Dataset: every image format, masks, conventions A and B, broken inputs.

References are independent of the loader: torchvision's ``Resize``/``ToTensor``/``Normalize`` (what
AnomalyCLIP applies, docs/DATASETS.md §4) with the mean/std written out from docs/DATASETS.md §4.1, RGB
expectations built from the pixel arrays the test wrote, and hand-computed resampling weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from wmoe_clip.data import AnomalyDataset
from wmoe_clip.data.dataset import normalise
from wmoe_clip.engine.feature_cache import ImageSource
from wmoe_clip.errors import WMoEError

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
W, H = 40, 30  # non-square, so the squash is exercised
S = 32


def _reference_image(rgb: np.ndarray, size: int = S) -> torch.Tensor:
    tf = transforms.Compose([
        transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    return tf(Image.fromarray(rgb, mode="RGB"))


def _reference_mask(binary: np.ndarray, size: int = S) -> torch.Tensor:
    # AnomalyCLIP's target transform (convention A): binary*255 -> Resize (bilinear) -> ToTensor -> > 0.5
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    return (tf(Image.fromarray(binary.astype(np.uint8) * 255, mode="L"))[0] > 0.5).float()


def _record(img: str, mask: str = "", anomaly: int = 0, cls: str = "widget", specie: str = "good") -> dict:
    return {"img_path": img, "mask_path": mask, "cls_name": cls, "specie_name": specie,
            "anomaly": anomaly, "dataset_name": "toy"}


def _write_meta(tmp_path: Path, records: list[dict], mask_threshold: int | None = None) -> Path:
    test: dict[str, list] = {}
    for r in records:
        test.setdefault(r["cls_name"], []).append(r)
    meta = {"root": "../raw", "dataset": "toy", "train": {}, "test": test}
    if mask_threshold is not None:
        meta["mask_threshold"] = mask_threshold
    prepared = tmp_path / "prepared"
    prepared.mkdir(exist_ok=True)
    (prepared / "meta.json").write_text(json.dumps(meta))
    return prepared


@pytest.fixture
def raw(tmp_path) -> Path:
    (tmp_path / "raw").mkdir()
    return tmp_path / "raw"


def _rgb(seed: int) -> np.ndarray:
    # Smooth content plus noise: bicubic overshoot and clipping are exercised but values stay varied.
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([xx * 6, yy * 8, (xx + yy) * 3], axis=-1)
    noise = np.random.default_rng(seed).integers(0, 30, (H, W, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _formats(raw: Path) -> dict[str, np.ndarray]:
    """Write one image per format; return the RGB array each should decode to."""
    expected = {}
    rgb = _rgb(0)
    grey = rgb[..., 0]
    Image.fromarray(grey, mode="L").save(raw / "grey.png")
    expected["grey.png"] = np.repeat(grey[..., None], 3, axis=-1)
    alpha = np.random.default_rng(1).integers(0, 256, (H, W), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(raw / "rgba.png")
    expected["rgba.png"] = rgb  # alpha dropped, not composited
    palette = np.random.default_rng(2).integers(0, 256, (256, 3), dtype=np.uint8)
    index = (np.arange(H * W).reshape(H, W) % 256).astype(np.uint8)
    pal = Image.fromarray(index, mode="P")
    pal.putpalette(palette.flatten().tolist())
    pal.save(raw / "palette.png")
    expected["palette.png"] = palette[index]
    sixteen = (np.arange(H * W).reshape(H, W) * 53).astype(np.uint16)  # spans 0 .. 63547
    Image.fromarray(sixteen).save(raw / "sixteen.png")
    expected["sixteen.png"] = np.repeat(np.rint(sixteen / 257.0).astype(np.uint8)[..., None], 3, axis=-1)
    Image.fromarray(sixteen).save(raw / "sixteen.tif")
    expected["sixteen.tif"] = expected["sixteen.png"]
    Image.fromarray(rgb).save(raw / "rgb.tif")
    expected["rgb.tif"] = rgb
    Image.fromarray(rgb).save(raw / "rgb.bmp")
    expected["rgb.bmp"] = rgb
    Image.fromarray(rgb).save(raw / "rgb.jpg", quality=95, subsampling=0)
    # JPEG is lossy: the expectation is the decoded pixels, which must be close to what was written.
    decoded = np.asarray(Image.open(raw / "rgb.jpg"))
    assert np.abs(decoded.astype(int) - rgb).mean() < 4
    expected["rgb.jpg"] = decoded
    Image.fromarray(grey, mode="L").save(raw / "grey.jpg", quality=95)
    expected["grey.jpg"] = np.repeat(np.asarray(Image.open(raw / "grey.jpg"))[..., None], 3, axis=-1)
    return expected


def test_every_image_format_matches_the_reference_transform(tmp_path, raw):
    expected = _formats(raw)
    assert Image.open(raw / "sixteen.png").mode == "I;16" and Image.open(raw / "palette.png").mode == "P"
    ds = AnomalyDataset(_write_meta(tmp_path, [_record(name) for name in expected]), image_size=S)
    assert len(ds) == len(expected)
    for i, (name, rgb) in enumerate(expected.items()):
        item = ds[i]
        assert item["img_path"] == name and item["index"] == i
        assert item["image"].shape == (3, S, S) and item["image"].dtype == torch.float32
        torch.testing.assert_close(item["image"], _reference_image(rgb), atol=1e-5, rtol=0, msg=name)


def test_uint8_pixels_normalised_on_the_device_equal_to_tensor_and_normalize(tmp_path, raw):
    expected = _formats(raw)
    ds = AnomalyDataset(_write_meta(tmp_path, [_record(name) for name in expected]), image_size=S)
    to_float = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    pixels = torch.stack([ds.pixel_item(i)["pixels"] for i in range(len(ds))])
    assert pixels.dtype == torch.uint8 and pixels.shape == (len(ds), S, S, 3)
    batch = normalise(pixels)
    assert batch.dtype == torch.float32 and batch.shape == (len(ds), 3, S, S) and batch.is_contiguous()
    for i in range(len(ds)):
        reference = to_float(Image.fromarray(pixels[i].numpy(), mode="RGB"))
        torch.testing.assert_close(batch[i], reference, atol=1e-6, rtol=0)


class _Identity:
    """A stand-in encoder that returns its input, so that the loader's batches can be compared."""

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return images


def test_loader_batches_equal_the_reference_transforms_pass_after_pass(tmp_path, raw):
    expected = _formats(raw)
    names = list(expected)
    values = np.zeros((H, W), dtype=np.uint8)
    values[5:20, 8:30] = 1
    Image.fromarray(values, mode="L").save(raw / "mask.png")
    records = [_record(name) for name in names] + [_record("rgb.bmp", "mask.png", 1, specie="crack")]
    ds = AnomalyDataset(_write_meta(tmp_path, records), image_size=S)
    images = [_reference_image(expected[name]) for name in names] + [_reference_image(expected["rgb.bmp"])]
    masks = [torch.zeros(S, S)] * len(names) + [_reference_mask(values > 0)]
    # Two workers that persist from one pass to the next, as over training epochs.
    source = ImageSource(ds, _Identity(), torch.device("cpu"), num_workers=2)
    last = len(records) - 1
    for plan in ([[0, 3, last], [5], [1, 2, 4]], [[last, 6], list(range(len(records)))]):
        batches = list(source.batches(plan))
        assert [b.indices for b in batches] == plan
        for batch, idx in zip(batches, plan):
            assert batch.labels.tolist() == [int(i == last) for i in idx]
            assert batch.masks.dtype == torch.float32
            torch.testing.assert_close(batch.feats, torch.stack([images[i] for i in idx]), atol=1e-6, rtol=0)
            torch.testing.assert_close(batch.masks, torch.stack([masks[i] for i in idx]), atol=0, rtol=0)


def test_a_new_pass_ends_the_previous_one(tmp_path, raw):
    Image.fromarray(_rgb(9)).save(raw / "a.png")
    ds = AnomalyDataset(_write_meta(tmp_path, [_record("a.png")] * 3), image_size=S)
    source = ImageSource(ds, _Identity(), torch.device("cpu"), num_workers=1)
    first = source.batches([[0], [1], [2]])
    next(first)
    assert [b.indices for b in source.batches([[2], [1]])] == [[2], [1]]
    with pytest.raises(RuntimeError, match="newer pass"):
        next(first)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path, raw):
    # Mid-grey in 16 bits (128 * 257) must come out as 8-bit 128, not as white (PIL's plain convert).
    Image.fromarray(np.full((H, W), 128 * 257, dtype=np.uint16)).save(raw / "mid.png")
    ds = AnomalyDataset(_write_meta(tmp_path, [_record("mid.png")]), image_size=S)
    expected = (128 / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(ds[0]["image"][:, 5, 5], expected, atol=1e-5, rtol=0)


def test_default_size_is_518(tmp_path, raw):
    Image.fromarray(_rgb(3)).save(raw / "a.png")
    item = AnomalyDataset(_write_meta(tmp_path, [_record("a.png")]))[0]
    assert item["image"].shape == (3, 518, 518) and item["mask"].shape == (518, 518)


def test_masks_binary_and_match_convention_a(tmp_path, raw):
    Image.fromarray(_rgb(4)).save(raw / "img.png")
    # VisA-like mask: values 1, 2 and 255, none of them 0/255-binary except 255.
    values = np.zeros((H, W), dtype=np.uint8)
    values[5:20, 8:30] = 1
    values[12:25, 20:35] = 2
    values[0:3, 0:3] = 255
    Image.fromarray(values, mode="L").save(raw / "mask.png")
    # An RGB palette-free colour mask where the foreground colour has a tiny luminance.
    colour = np.zeros((H, W, 3), dtype=np.uint8)
    colour[10:20, 10:20] = (0, 0, 1)
    Image.fromarray(colour).save(raw / "colour_mask.png")
    records = [
        _record("img.png", "mask.png", 1, specie="crack"),
        _record("img.png", "colour_mask.png", 1, specie="crack"),
        _record("img.png"),
        _record("img.png", "", 1, specie="tumor"),
    ]
    ds = AnomalyDataset(_write_meta(tmp_path, records), image_size=S)
    anomalous, colour_item, normal, image_only = (ds[i] for i in range(4))
    assert anomalous["mask"].dtype == torch.float32 and anomalous["mask"].shape == (S, S)
    assert set(anomalous["mask"].unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(anomalous["mask"], _reference_mask(values > 0), atol=0, rtol=0)
    torch.testing.assert_close(colour_item["mask"], _reference_mask(colour.any(axis=-1)), atol=0, rtol=0)
    assert colour_item["mask"].sum() > 0
    assert anomalous["label"] == 1 and anomalous["specie_name"] == "crack" and anomalous["cls_name"] == "widget"
    assert normal["label"] == 0 and normal["mask"].sum() == 0
    assert image_only["label"] == 1 and image_only["mask"].sum() == 0


def test_bilinear_drops_a_thin_line_that_nearest_keeps(tmp_path, raw):
    # 16 -> 8 px: a one-pixel line at column 5. Nearest samples source column 2x+1, so output column 2
    # is the line. PIL's bilinear (triangle filter of support 2 when halving) weights column 5 by
    # 0.375 for output column 2, below 0.5: the line vanishes (convention A's known border effect).
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(raw / "img.png")
    line = np.zeros((16, 16), dtype=np.uint8)
    line[:, 5] = 255
    Image.fromarray(line).save(raw / "line.png")
    prepared = _write_meta(tmp_path, [_record("img.png", "line.png", 1, specie="scratch")])
    bilinear = AnomalyDataset(prepared, image_size=8)[0]["mask"]
    nearest = AnomalyDataset(prepared, image_size=8, mask_interpolation="nearest")[0]["mask"]
    assert bilinear.sum() == 0
    expected = torch.zeros(8, 8)
    expected[:, 2] = 1
    torch.testing.assert_close(nearest, expected, atol=0, rtol=0)
    # A two-pixel band (columns 4-5) weighs 0.75 at output column 2 and survives both conventions.
    line[:, 4] = 255
    Image.fromarray(line).save(raw / "line.png")
    torch.testing.assert_close(AnomalyDataset(prepared, image_size=8)[0]["mask"], expected, atol=0, rtol=0)


def test_jpeg_mask_noise_and_threshold(tmp_path, raw):
    Image.fromarray(_rgb(5)).save(raw / "img.png")
    clean = np.zeros((H, W), dtype=np.uint8)
    clean[8:22, 10:30] = 255
    Image.fromarray(clean).save(raw / "mask.jpg", quality=75)
    noisy = np.asarray(Image.open(raw / "mask.jpg"))
    assert len(np.unique(noisy)) > 2  # the test really has compression noise
    records = [_record("img.png", "mask.jpg", 1, specie="polyp")]
    loose = AnomalyDataset(_write_meta(tmp_path, records), image_size=S)[0]["mask"]
    assert set(loose.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(loose, _reference_mask(noisy > 0), atol=0, rtol=0)
    strict = AnomalyDataset(_write_meta(tmp_path, records, mask_threshold=128), image_size=S)[0]["mask"]
    torch.testing.assert_close(strict, _reference_mask(clean > 0), atol=0, rtol=0)


def test_records_classes_and_dataloader(tmp_path, raw):
    Image.fromarray(_rgb(6)).save(raw / "a.png")
    records = [_record("a.png", cls="b_cls"), _record("a.png", cls="a_cls"), _record("a.png", cls="b_cls")]
    prepared = _write_meta(tmp_path, records)
    ds = AnomalyDataset(prepared, image_size=S)
    assert ds.class_names == ("b_cls", "a_cls")  # manifest order
    assert ds.class_indices("b_cls") == [0, 1] and ds.class_indices("a_cls") == [2]
    assert [r["cls_name"] for r in ds.records] == ["b_cls", "b_cls", "a_cls"]
    only = AnomalyDataset(prepared, image_size=S, classes=["a_cls"])
    assert len(only) == 1 and only.class_names == ("a_cls",)
    with pytest.raises(WMoEError, match="no class"):
        AnomalyDataset(prepared, classes=["zzz"])
    with pytest.raises(WMoEError, match="mask_interpolation"):
        AnomalyDataset(prepared, mask_interpolation="bicubic")
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3, num_workers=1)))
    assert batch["image"].shape == (3, 3, S, S) and batch["mask"].shape == (3, S, S)
    assert batch["label"].tolist() == [0, 0, 0] and batch["cls_name"] == ["b_cls", "b_cls", "a_cls"]


def test_broken_inputs_raise_errors_naming_the_file(tmp_path, raw):
    Image.fromarray(_rgb(7)).save(raw / "ok.png")
    (raw / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    Image.fromarray(_rgb(8)).save(raw / "full.jpg")
    data = (raw / "full.jpg").read_bytes()
    (raw / "truncated.jpg").write_bytes(data[: len(data) // 2])
    Image.fromarray(np.zeros((H + 1, W), dtype=np.uint8)).save(raw / "wrong_size.png")
    records = [
        _record("missing.png"),
        _record("corrupt.png"),
        _record("truncated.jpg"),
        _record("ok.png", "no_mask.png", 1, specie="x"),
        _record("ok.png", "corrupt.png", 1, specie="x"),
        _record("ok.png", "wrong_size.png", 1, specie="x"),
    ]
    ds = AnomalyDataset(_write_meta(tmp_path, records), image_size=S)
    expectations = [
        rf"image {raw}/missing\.png does not exist",
        rf"cannot decode image {raw}/corrupt\.png .*corrupt",
        rf"cannot decode image {raw}/truncated\.jpg",
        rf"mask {raw}/no_mask\.png does not exist",
        rf"cannot decode mask {raw}/corrupt\.png",
        rf"mask {raw}/wrong_size\.png is 40x31 but its image is 40x30",
    ]
    for i, pattern in enumerate(expectations):
        with pytest.raises(WMoEError, match=pattern) as err:
            ds[i]
        assert f"record {i}" in str(err.value) and "'toy'" in str(err.value)
