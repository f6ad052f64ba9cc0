"""The torch ``Dataset`` over a prepared ``meta.json`` (docs/DATASETS.md §3, §4).

Image: decoded by PIL (``data.images``: EXIF orientation applied, a JPEG over the pixel budget
decoded at reduced scale), converted to RGB (grey → 3 equal channels, alpha dropped, palette applied,
16-bit scaled to 8-bit by full range), squashed to S×S with bicubic resampling, normalised with the
OpenAI CLIP mean and std. Mask: foreground is any colour channel above the manifest's
``mask_threshold`` (0 except for JPEG masks), decided at native resolution *before* resizing; then
convention A (bilinear resize, > 0.5; the default) or B (nearest). Normal and image-only records get
an all-zero mask. An unreadable, missing or mis-sized file raises ``WMoEError`` naming the file, and
so does, at load, an anomalous record without a mask in a dataset with pixel metrics: its all-zero
mask would silently teach and score its defect as normal pixels.

Two views of a record: ``dataset[i]`` (float image and mask, ready to use) and
``dataset.pixel_item(i)`` (the squashed uint8 pixels and a bool mask), which is what loader workers
send: a quarter of the bytes to copy between processes and pin, and :func:`normalise` finishes the
batch on the compute device with exactly the arithmetic of ``ToTensor`` + ``Normalize``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..errors import WMoEError
from .images import DecodedImage, ImageTooLarge, read_image
from .masks import mask_values
from .meta import load_meta

MASK_INTERPOLATIONS = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
_SIXTEEN_BIT = {"I", "I;16", "I;16L", "I;16B", "I;16N"}

_MEAN = torch.tensor(OPENAI_DATASET_MEAN, dtype=torch.float32)[:, None, None]
_STD = torch.tensor(OPENAI_DATASET_STD, dtype=torch.float32)[:, None, None]


def _open(path: Path, what: str, where: str) -> DecodedImage:
    try:
        return read_image(path)
    except FileNotFoundError:
        raise WMoEError(f"{where}: {what} {path} does not exist; check the raw folder or re-run prepare") from None
    except ImageTooLarge as exc:
        raise WMoEError(f"{where}: {what} {path}: {exc}; shrink it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise WMoEError(f"{where}: cannot decode {what} {path} ({exc}); the file is corrupt: "
                        "replace it from the source archive or re-run download") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB view of any PIL mode; 16-bit grey is scaled (65535 → 255), not clipped to white."""
    if img.mode in _SIXTEEN_BIT:
        grey = np.asarray(img).astype(np.float64) / 257.0
        img = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        raise ValueError("floating-point images have no defined range; convert them to 8 or 16 bit")
    # convert() would copy an image that is RGB already.
    return img if img.mode == "RGB" else img.convert("RGB")


def squash(rgb: Image.Image, size: int) -> torch.Tensor:
    """The size×size×3 uint8 pixels of an RGB image squashed with PIL's bicubic filter."""
    # np.array, not asarray: PIL exports read-only bytes, which torch does not accept.
    return torch.from_numpy(np.array(rgb.resize((size, size), Image.Resampling.BICUBIC)))


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """(…, S, S, 3) uint8 pixels → (…, 3, S, S) float32 with OpenAI CLIP mean/std, on their device.

    The operations and their order are those of torchvision's ``ToTensor`` (÷255 in float32) then
    ``Normalize`` ((x − mean) / std), so the result is the reference's, element for element.
    """
    x = pixels.movedim(-1, -3).to(torch.float32, memory_format=torch.contiguous_format).div(255)
    return x.sub(_MEAN.to(x.device)).div(_STD.to(x.device))


def preprocess_image(rgb: Image.Image, size: int) -> torch.Tensor:
    """The model input of an RGB image: squashed to size×size (bicubic), OpenAI CLIP mean/std, 3×S×S."""
    return normalise(squash(rgb, size))


class AnomalyDataset(Dataset):
    """Records of one split of a prepared dataset, optionally restricted to some classes.

    ``records``, ``class_names`` and ``class_indices(cls)`` let the engine evaluate class by class
    (e.g. with ``torch.utils.data.Subset``).
    """

    def __init__(
        self,
        prepared_dir: str | os.PathLike,
        split: str = "test",
        image_size: int = 518,
        mask_interpolation: str = "bilinear",
        classes: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        if split not in ("train", "test"):
            raise WMoEError(f"split must be 'train' or 'test', got {split!r}")
        if mask_interpolation not in MASK_INTERPOLATIONS:
            raise WMoEError(f"mask_interpolation must be one of {sorted(MASK_INTERPOLATIONS)}, got {mask_interpolation!r}")
        if not (isinstance(image_size, int) and image_size > 0):
            raise WMoEError(f"image_size must be a positive integer, got {image_size!r}")
        self.root, meta = load_meta(prepared_dir)
        self.dataset: str = meta["dataset"]
        self.mask_threshold: int = meta["mask_threshold"]
        self.image_size = image_size
        self.mask_interpolation = mask_interpolation
        available = list(meta[split])
        if classes is None:
            names = available
        else:
            unknown = [c for c in classes if c not in meta[split]]
            if unknown:
                raise WMoEError(f"{prepared_dir}: no class {unknown} in the {split} split; classes: {available}")
            names = list(classes)
        self.class_names: tuple[str, ...] = tuple(names)
        self.records: list[dict[str, Any]] = [r for c in names for r in meta[split][c]]
        self._check_masks(prepared_dir, split)

    def _check_masks(self, prepared_dir: str | os.PathLike, split: str) -> None:
        from .registry import get, keys

        unmasked = [r["img_path"] for r in self.records if r["anomaly"] and not r["mask_path"]]
        if unmasked and self.dataset in keys() and get(self.dataset).pixel_metrics:
            raise WMoEError(
                f"{Path(prepared_dir) / 'meta.json'}: {len(unmasked)} anomalous {split} image(s) of {self.dataset!r} "
                f"have no mask (mask_path \"\"), e.g. {unmasked[0]}; {self.dataset!r} has pixel metrics, so their "
                "defects would count as normal pixels. Re-run wmoe-clip prepare, or give them their masks"
            )

    def __len__(self) -> int:
        return len(self.records)

    def class_indices(self, cls_name: str) -> list[int]:
        """Dataset indices of the records of class ``cls_name``, in manifest order."""
        return [i for i, r in enumerate(self.records) if r["cls_name"] == cls_name]

    def _where(self, index: int) -> str:
        r = self.records[index]
        return f"dataset {self.dataset!r}, class {r['cls_name']!r}, record {index}"

    def load_pixels(self, index: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """The squashed S×S×3 uint8 pixels and the native (width, height), as oriented by its EXIF."""
        path = self.root / self.records[index]["img_path"]
        decoded = _open(path, "image", self._where(index))
        try:
            rgb = to_rgb(decoded.image)
        except ValueError as exc:
            raise WMoEError(f"{self._where(index)}: image {path}: {exc}") from None
        return squash(rgb, self.image_size), decoded.size

    def load_mask(self, index: int, native_size: tuple[int, int]) -> torch.Tensor:
        """The S×S bool mask; all false for normal and image-only records."""
        r = self.records[index]
        s = self.image_size
        if not r["anomaly"] or not r["mask_path"]:
            return torch.zeros(s, s, dtype=torch.bool)
        path = self.root / r["mask_path"]
        decoded = _open(path, "mask", self._where(index))
        if decoded.size != native_size:
            raise WMoEError(
                f"{self._where(index)}: mask {path} is {decoded.size[0]}x{decoded.size[1]} but its image is "
                f"{native_size[0]}x{native_size[1]}: image and mask are mis-paired; re-run prepare"
            )
        binary = Image.fromarray((mask_values(decoded.image) > self.mask_threshold).astype(np.uint8) * 255, mode="L")
        resized = np.asarray(binary.resize((s, s), MASK_INTERPOLATIONS[self.mask_interpolation]))
        # Convention A thresholds the interpolated value at 0.5 (of 255); nearest keeps {0, 255}.
        return torch.from_numpy(resized > 127.5)

    def pixel_item(self, index: int) -> dict[str, Any]:
        """What a loader worker sends: ``pixels`` (S×S×3 uint8), ``mask`` (S×S bool), ``label``, ``index``."""
        pixels, native_size = self.load_pixels(index)
        mask = self.load_mask(index, native_size)
        return {"pixels": pixels, "mask": mask, "label": int(self.records[index]["anomaly"]), "index": index}

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = self.records[index]
        item = self.pixel_item(index)
        return {
            "image": normalise(item["pixels"]),
            "mask": item["mask"].float(),
            "label": item["label"],
            "cls_name": r["cls_name"],
            "specie_name": r["specie_name"],
            "img_path": r["img_path"],
            "index": index,
        }
