"""The library of the synthetic writers: ``Writer`` and the layouts several datasets share.

A dataset's own writer (``write`` in its module ``wmoe_clip.data.datasets.<key>``) fills a RAW_DIR
exactly as the official archive would extract, with synthetic images from ``Writer.sample``;
``prepare`` then reads it without knowing it is synthetic. A writer also records the ground truth
(which image is anomalous, which mask is its own) so tests can check ``prepare`` against what was
actually written. ``write_defect_folders`` (MVTec-style class folders), ``bayes_pfl_writer`` and
``image_mask_writer`` (pixel-only sets) write the layouts several datasets share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..registry import DatasetSpec
from .defects import DEFECTS, plant
from .textures import Style, stable_seed, texture


@dataclass(frozen=True)
class Shape:
    """The image size of a dataset's stand-in, (min, max) in pixels, and whether the real images are greyscale."""

    height: tuple[int, int]
    width: tuple[int, int]
    grey: bool = False


@dataclass
class Writer:
    """Draws samples and writes files under ``root``, keeping the ground truth of what it wrote."""

    root: Path
    spec: DatasetSpec
    seed: int
    shape: Shape
    truth: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(stable_seed(self.spec.key, self.seed))
        self.grey = self.shape.grey
        self._styles: dict[str, Style] = {}

    def style(self, cls: str) -> Style:
        if cls not in self._styles:
            self._styles[cls] = Style.draw(np.random.default_rng(stable_seed(self.spec.key, cls)), self.grey)
        return self._styles[cls]

    def sample(self, cls: str, anomalous: bool, n_defects: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
        """A textured image of ``cls`` and, if anomalous, the regions of its planted defects."""
        h = int(self.rng.integers(self.shape.height[0], self.shape.height[1] + 1))
        w = int(self.rng.integers(self.shape.width[0], self.shape.width[1] + 1))
        style = self.style(cls)
        img, regions = texture(self.rng, style, h, w), []
        taken = np.zeros((h, w), bool)
        for _ in range(n_defects if anomalous else 0):
            kind = DEFECTS[int(self.rng.integers(len(DEFECTS)))]
            img, region = plant(self.rng, img, style, kind, taken)
            taken |= region
            regions.append(region)
        return img, regions

    def defect_kind(self) -> str:
        return DEFECTS[int(self.rng.integers(len(DEFECTS)))]

    def target(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def image(self, rel: str, img: np.ndarray) -> str:
        pil = Image.fromarray(img[..., 0] if self.grey else img)
        fmt = Image.registered_extensions()[Path(rel).suffix.lower()]
        pil.save(self.target(rel), format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
        return rel

    def mask(self, rel: str, regions: list[np.ndarray], values: list[int] | None = None) -> str:
        """Write regions as one mask, region i with ``values[i]`` (default 255) on 0."""
        m = np.zeros(regions[0].shape, np.uint8)
        for region, value in zip(regions, values or [255] * len(regions)):
            m[region] = value
        fmt = Image.registered_extensions()[Path(rel).suffix.lower()]
        Image.fromarray(m).save(self.target(rel), format=fmt)
        return rel

    def add(self, split: str, cls: str, img: str, mask: str, anomaly: int) -> None:
        self.truth.append({"split": split, "cls_name": cls, "img_path": img, "mask_path": mask, "anomaly": anomaly})

    def pair(self, split: str, cls: str, img_rel: str, mask_rel: str | None, anomalous: bool, **mask_kw) -> None:
        """Sample, write an image (and its mask where ``mask_rel``), and record the truth."""
        img, regions = self.sample(cls, anomalous, n_defects=mask_kw.pop("n_defects", 1))
        self.image(img_rel, img)
        mask = self.mask(mask_rel, regions, **mask_kw) if anomalous and mask_rel else ""
        self.add(split, cls, img_rel, mask, int(anomalous))

    def labelled(self, split: str, cls: str, img_rel: str, anomalous: bool) -> list[np.ndarray]:
        """Sample and write an image and record it without a mask; returns its defect regions."""
        img, regions = self.sample(cls, anomalous)
        self.image(img_rel, img)
        self.add(split, cls, img_rel, "", int(anomalous))
        return regions or [np.zeros(img.shape[:2], bool)]


def split_counts(spec: DatasetSpec, size: int) -> tuple[int, int]:
    """(normal, anomalous) test images per class: all anomalous for pixel-only sets, else half/half."""
    if not spec.image_metrics:
        return 0, size
    return size // 2, size - size // 2


N_TRAIN = 2  # normal train images per class where the native layout has a train split


def write_defect_folders(w: Writer, size: int, normal: str, anomaly_folder: Callable[[Writer], str],
                    name: Callable[[int], str], img_ext: Callable[[str, int], str],
                    mask_name: Callable[[str, int], str], prefix: str = "", train: int = N_TRAIN) -> None:
    """MVTec-style ``<cls>/{train,test}/<specie>`` + ``ground_truth/<defect>`` for every class."""
    n_norm, n_anom = split_counts(w.spec, size)
    for cls in w.spec.classes:
        base = f"{prefix}{cls}"
        (w.root / base / "train" / normal).mkdir(parents=True, exist_ok=True)
        for i in range(train):
            w.pair("train", cls, f"{base}/train/{normal}/{name(i)}.{img_ext(cls, i)}", None, False)
        for i in range(n_norm):
            w.pair("test", cls, f"{base}/test/{normal}/{name(i)}.{img_ext(cls, i)}", None, False)
        for i in range(n_anom):
            defect = anomaly_folder(w)
            stem = name(n_norm + i)
            w.pair("test", cls, f"{base}/test/{defect}/{stem}.{img_ext(cls, i)}",
                   f"{base}/ground_truth/{defect}/{mask_name(cls, i).format(stem=stem)}", True)


def bayes_pfl_writer(folder: str) -> Callable[[Writer, int], None]:
    """Bayes-PFL's DATA_three layout: ``<DS>/<cls>/test/{good,anomaly}/*.bmp`` + ``.png`` masks, empty train."""
    def write(w: Writer, size: int) -> None:
        write_defect_folders(w, size, "good", lambda _: "anomaly", lambda i: f"{folder}_{i:04d}_{7 * i + 3:010d}",
                       lambda c, i: "bmp", lambda c, i: "{stem}.png", prefix=f"{folder}/", train=0)
    return write


def image_mask_writer(images: str, masks: str, name: Callable[[int], str], img_ext: str,
                       mask_name: str) -> Callable[[Writer, int], None]:
    """Pixel-only sets: every image anomalous, the mask named after it."""
    def write(w: Writer, size: int) -> None:
        (cls,) = w.spec.classes
        for i in range(split_counts(w.spec, size)[1]):
            stem = name(i)
            w.pair("test", cls, f"{images}/{stem}.{img_ext}", f"{masks}/{mask_name.format(stem=stem)}", True)
    return write
