"""Writers of each dataset's native layout: folder names, file formats, CSV splits, mask naming.

Each writer fills a RAW_DIR exactly as the official archive would extract (docs/DATASETS.md §5), with
synthetic images from ``Writer.sample``; ``prepare`` then reads it without knowing it is synthetic.
A writer also records the ground truth (which image is anomalous, which mask is its own) so tests
can check ``prepare`` against what was actually written. ``WRITERS`` is keyed by (dataset, protocol
variant): None for a dataset with one protocol, and ``folder`` (a user's own dataset, ``prepare
folder``) in its two forms, a folder (None) and a CSV (``csv``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from PIL import ImageDraw

from ..registry import DatasetSpec
from .defects import DEFECTS, plant
from .textures import Style, stable_seed, texture

# Per dataset: (height range, width range) in pixels and whether the real images are greyscale.
SHAPES: dict[str, tuple[tuple[int, int], tuple[int, int], bool]] = {
    "mvtec": ((64, 64), (64, 64), False),
    "visa": ((64, 72), (80, 96), False),
    "btad": ((64, 80), (64, 80), False),
    "ksdd2": ((96, 112), (40, 44), True),
    "dagm": ((64, 64), (64, 64), True),
    "dtd": ((64, 80), (64, 80), False),
    "headct": ((64, 80), (64, 80), True),
    "brainmri": ((64, 96), (56, 88), True),
    "br35h": ((64, 96), (56, 88), True),
    "isic": ((60, 72), (80, 96), False),
    "colondb": ((60, 60), (80, 80), False),
    "clinicdb": ((72, 72), (96, 96), False),
    "endo": ((64, 80), (72, 96), False),
    "kvasir": ((64, 88), (64, 96), False),
    "folder": ((64, 72), (64, 72), False),
}


@dataclass
class Writer:
    """Draws samples and writes files under ``root``, keeping the ground truth of what it wrote."""

    root: Path
    spec: DatasetSpec
    seed: int
    # SHAPES entry (the dataset key; ``folder`` for a user's dataset, whose spec key is its name).
    shape_key: str = ""
    truth: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(stable_seed(self.spec.key, self.seed))
        (hr, wr, self.grey) = SHAPES[self.shape_key or self.spec.key]
        self.h_range, self.w_range = hr, wr
        self._styles: dict[str, Style] = {}

    def style(self, cls: str) -> Style:
        if cls not in self._styles:
            self._styles[cls] = Style.draw(np.random.default_rng(stable_seed(self.spec.key, cls)), self.grey)
        return self._styles[cls]

    def sample(self, cls: str, anomalous: bool, n_defects: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
        """A textured image of ``cls`` and, if anomalous, the regions of its planted defects."""
        h = int(self.rng.integers(self.h_range[0], self.h_range[1] + 1))
        w = int(self.rng.integers(self.w_range[0], self.w_range[1] + 1))
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


def _defect_folders(w: Writer, size: int, normal: str, anomaly_folder: Callable[[Writer], str],
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


def write_mvtec(w: Writer, size: int) -> None:
    (w.root / "license.txt").write_text("CC BY-NC-SA 4.0 (synthetic stand-in)\n")
    (w.root / "readme.txt").write_text("MVTec AD layout, synthetic stand-in\n")
    _defect_folders(w, size, "good", Writer.defect_kind, lambda i: f"{i:03d}",
                    lambda c, i: "png", lambda c, i: "{stem}_mask.png")


BTAD_EXTS = {"01": ("bmp", "png"), "02": ("png", "png"), "03": ("bmp", "bmp")}


def write_btad(w: Writer, size: int) -> None:
    # Real BTAD mixes .bmp and .png between products (and between images and masks); class 02
    # alternates within the class so that pairing must ignore extensions.
    def img_ext(cls: str, i: int) -> str:
        return ("png", "bmp")[i % 2] if cls == "02" else BTAD_EXTS[cls][0]

    _defect_folders(w, size, "ok", lambda _: "ko", lambda i: f"{i:04d}", img_ext,
                    lambda c, i: "{stem}." + BTAD_EXTS[c][1], prefix="BTech_Dataset_transformed/")


def write_dtd(w: Writer, size: int) -> None:
    _defect_folders(w, size, "good", lambda _: "bad", lambda i: f"{i:03d}",
                    lambda c, i: "png", lambda c, i: "{stem}_mask.png")


def _bayes_pfl_pack(folder: str) -> Callable[[Writer, int], None]:
    """Bayes-PFL's DATA_three layout: ``<DS>/<cls>/test/{good,anomaly}/*.bmp`` + ``.png`` masks, empty train."""
    def write(w: Writer, size: int) -> None:
        _defect_folders(w, size, "good", lambda _: "anomaly", lambda i: f"{folder}_{i:04d}_{7 * i + 3:010d}",
                        lambda c, i: "bmp", lambda c, i: "{stem}.png", prefix=f"{folder}/", train=0)
    return write


def write_visa(w: Writer, size: int) -> None:
    n_norm, n_anom = split_counts(w.spec, size)
    rows = []
    for cls in w.spec.classes:
        images = f"{cls}/Data/Images"
        for split, n, start in (("train", N_TRAIN, 0), ("test", n_norm, N_TRAIN)):
            for i in range(start, start + n):
                rel = f"{images}/Normal/{i:04d}.JPG"
                w.pair(split, cls, rel, None, False)
                rows.append([cls, split, "normal", rel, ""])
        for i in range(n_anom):
            rel, mask = f"{images}/Anomaly/{i:03d}.JPG", f"{cls}/Data/Masks/Anomaly/{i:03d}.png"
            # Real VisA masks are not 0/255: each defect carries a small label value.
            n_def = 1 + i % 2
            w.pair("test", cls, rel, mask, True, n_defects=n_def, values=list(range(1, n_def + 1)))
            rows.append([cls, "test", "anomaly", rel, mask])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["object", "split", "label", "image", "mask"], *rows])
    w.target("split_csv/1cls.csv").write_text(buf.getvalue())


def write_headct(w: Writer, size: int) -> None:
    n_norm, n_anom = split_counts(w.spec, size)
    labels = w.rng.permutation([0] * n_norm + [1] * n_anom)
    (cls,) = w.spec.classes
    for i, label in enumerate(labels):
        w.pair("test", cls, f"head_ct/head_ct/{i:03d}.png", None, bool(label))
    # The Kaggle header has a space after the comma; ids are plain integers.
    w.target("labels.csv").write_text("id, hemorrhage\n" + "".join(f"{i},{l}\n" for i, l in enumerate(labels)))


BRAIN_EXTS = ("jpg", "JPG", "jpeg", "png")


def write_brainmri(w: Writer, size: int) -> None:
    n_norm, n_anom = split_counts(w.spec, size)
    (cls,) = w.spec.classes
    for i in range(n_norm):
        w.pair("test", cls, f"brain_tumor_dataset/no/{i + 1} no.{BRAIN_EXTS[i % 4]}", None, False)
    for i in range(n_anom):
        w.pair("test", cls, f"brain_tumor_dataset/yes/Y{i + 1}.{BRAIN_EXTS[(i + 1) % 4]}", None, True)


def write_br35h(w: Writer, size: int) -> None:
    n_norm, n_anom = split_counts(w.spec, size)
    (cls,) = w.spec.classes
    for i in range(n_norm):
        w.pair("test", cls, f"no/no{i}.jpg", None, False)
    for i in range(n_anom):
        w.pair("test", cls, f"yes/y{i}.jpg", None, True)
    # The unlabeled pred/ folder of the real archive: images without labels, not in the truth.
    for i in range(max(2, size // 4)):
        w.image(f"pred/pred{i}.jpg", w.sample(cls, bool(i % 2))[0])


def _image_mask_folders(images: str, masks: str, name: Callable[[int], str], img_ext: str,
                        mask_name: str) -> Callable[[Writer, int], None]:
    """Pixel-only sets: every image anomalous, the mask named after it."""
    def write(w: Writer, size: int) -> None:
        (cls,) = w.spec.classes
        for i in range(split_counts(w.spec, size)[1]):
            stem = name(i)
            w.pair("test", cls, f"{images}/{stem}.{img_ext}", f"{masks}/{mask_name.format(stem=stem)}", True)
    return write


def write_kvasir(w: Writer, size: int) -> None:
    ids = [f"cju{stable_seed('kvasir', i) % 16**8:08x}" for i in range(split_counts(w.spec, size)[1])]
    # JPEG masks: compression noise around the edges, as in the real Kvasir-SEG.
    _image_mask_folders("Kvasir-SEG/images", "Kvasir-SEG/masks", ids.__getitem__, "jpg", "{stem}.jpg")(w, size)
    w.target("Kvasir-SEG/kavsir_bboxes.json").write_text(json.dumps({i: {"bbox": []} for i in ids}))


def write_ksdd2_official(w: Writer, size: int) -> None:
    """ViCoS' KolektorSDD2.zip: ``{train,test}/<id>.png`` each with a ``<id>_GT.png``, all-zero for normals.

    Train holds positives too (the balanced variant draws from both splits), and the archive's
    duplicate ``train/<id> (copy).png`` without a GT is reproduced.
    """
    (cls,) = w.spec.classes
    n_norm, n_anom = split_counts(w.spec, size)
    for split, first, (normal, anomalous) in (("train", 10000, (n_norm, max(1, size // 4))),
                                              ("test", 20000, (n_norm, n_anom))):
        labels = w.rng.permutation([0] * normal + [1] * anomalous)
        for i, label in enumerate(labels):
            stem = f"{split}/{first + i}"
            regions = w.labelled(split, cls, f"{stem}.png", bool(label))
            w.mask(f"{stem}_GT.png", regions)
            if label:
                w.truth[-1]["mask_path"] = f"{stem}_GT.png"
    w.image("train/10000 (copy).png", w.sample(cls, False)[0])


def _ellipse(region: np.ndarray) -> np.ndarray:
    """A filled ellipse around ``region`` with a margin: DAGM's coarse weak labels."""
    ys, xs = np.nonzero(region)
    h, w = region.shape
    m = Image.new("L", (w, h), 0)
    ImageDraw.Draw(m).ellipse([xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3], fill=255)
    return np.asarray(m) > 0


def write_dagm_kaggle(w: Writer, size: int) -> None:
    """The Kaggle release: ``DAGM_KaggleUpload/Class<i>/{Train,Test}/<nnnn>.PNG`` with ``Label/Labels.txt``.

    Labels.txt: the class number, then ``<id>\\t<flag>\\t<file>\\t0\\t<label file | 0>`` per image; the
    defective images' ellipse labels are ``Label/<nnnn>_label.PNG``. Train holds normals only here.
    """
    n_norm, n_anom = split_counts(w.spec, size)
    for number, cls in enumerate(w.spec.classes, start=1):
        for split, labels in (("Train", [0] * N_TRAIN), ("Test", w.rng.permutation([0] * n_norm + [1] * n_anom))):
            base = f"DAGM_KaggleUpload/{cls}/{split}"
            rows = [str(number)]
            for i, label in enumerate(labels, start=1):
                name = f"{i:04d}.PNG"
                regions = w.labelled(split.lower(), cls, f"{base}/{name}", bool(label))
                mask = f"{i:04d}_label.PNG" if label else "0"
                if label:
                    w.mask(f"{base}/Label/{mask}", [_ellipse(r) for r in regions])
                    w.truth[-1]["mask_path"] = f"{base}/Label/{mask}"
                rows.append(f"{i}\t{int(label)}\t{name}\t0\t{mask}")
            w.target(f"{base}/Label/Labels.txt").write_text("\n".join(rows) + "\n")


# A user's parts: one class with masks (named with and without ``_mask``), one image-only class (no
# ground_truth/), one whose anomalous images miss a mask, one pixel-only class (no normals).
FOLDER_CLASSES = ("screw", "plate", "cable", "weld")
IMAGE_ONLY, MASK_MISSING, PIXEL_ONLY = "plate", "cable", "weld"


def _folder_items(w: Writer, size: int):
    """(class, index, anomalous, keeps a mask) of every image of the custom layouts."""
    n_norm, n_anom = split_counts(w.spec, size)
    for cls in w.spec.classes:
        normal = 0 if cls == PIXEL_ONLY else n_norm
        # Two anomalies at least, so that one without a mask leaves the class partly masked.
        for i in range(normal + (max(2, n_anom) if cls == MASK_MISSING else n_anom)):
            anomalous = i >= normal
            masked = anomalous and cls != IMAGE_ONLY and not (cls == MASK_MISSING and i == normal)
            yield cls, i, anomalous, masked


def write_folder(w: Writer, size: int) -> None:
    """A user's folder in the MVTec convention (``prepare folder --raw``), with a stray file."""
    for cls, i, anomalous, masked in _folder_items(w, size):
        defect = "good" if not anomalous else ("scratch", "spot")[i % 2]
        img = f"{cls}/{defect}/{i:03d}.png"
        mask = f"{cls}/ground_truth/{defect}/{i:03d}{'_mask' if i % 2 else ''}.png" if masked else None
        w.pair("test", cls, img, mask, anomalous)
    (w.root / "README.txt").write_text("parts inspected on line 3 (synthetic stand-in)\n")


def write_folder_csv(w: Writer, size: int) -> None:
    """A user's CSV (``prepare folder --csv labels.csv``): path,label,mask,class, plus an unlisted image."""
    rows = [["path", "label", "mask", "class"]]
    for cls, i, anomalous, masked in _folder_items(w, size):
        img = f"images/{cls}_{i:03d}.png"
        mask = f"masks/{cls}_{i:03d}.png" if masked else None
        w.pair("test", cls, img, mask, anomalous)
        rows.append([img, "anomaly" if anomalous else "normal", mask or "", cls])
    w.image("images/unlisted.png", w.sample(FOLDER_CLASSES[0], False)[0])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    w.target("labels.csv").write_text(buf.getvalue())


WRITERS: dict[tuple[str, str | None], Callable[[Writer, int], None]] = {
    ("mvtec", None): write_mvtec,
    ("visa", None): write_visa,
    ("btad", None): write_btad,
    ("ksdd2", "bayes-pfl"): _bayes_pfl_pack("KSDD2"),
    ("ksdd2", "official"): write_ksdd2_official,
    ("ksdd2", "official-balanced"): write_ksdd2_official,
    ("dagm", "bayes-pfl"): _bayes_pfl_pack("DAGM"),
    ("dagm", "kaggle"): write_dagm_kaggle,
    ("dtd", None): write_dtd,
    ("headct", None): write_headct,
    ("brainmri", None): write_brainmri,
    ("br35h", None): write_br35h,
    ("isic", None): _image_mask_folders("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth",
                                        lambda i: f"ISIC_{3 * i + 1:07d}", "jpg", "{stem}_Segmentation.png"),
    ("colondb", None): _image_mask_folders("CVC-ColonDB/images", "CVC-ColonDB/masks", lambda i: str(i + 1), "png",
                                           "{stem}.png"),
    ("clinicdb", None): _image_mask_folders("CVC-ClinicDB/images", "CVC-ClinicDB/masks", lambda i: str(i + 1),
                                            "tif", "{stem}.tif"),
    ("endo", None): _image_mask_folders("EndoTect_2020_Segmentation_Test_Dataset/images",
                                        "EndoTect_2020_Segmentation_Test_Dataset/masks",
                                        lambda i: f"{stable_seed('endo', i):08x}", "jpg", "{stem}.png"),
    ("kvasir", None): write_kvasir,
    ("folder", None): write_folder,
    ("folder", "csv"): write_folder_csv,
}
