"""What the dataset converters share: the layout description, the conversion context and name-based pairing.

Each dataset module (``wmoe_clip.data.datasets.<key>``) converts its native layout with these
helpers; ``custom`` (users' own datasets) uses them too.

Masks are always paired with images by file stem (plus a dataset's mask suffix such as ``_mask``),
never by sort order: one missing or extra file must be reported, not shift every later pair.
Every irregular file becomes either a *problem* (an error, or under ``--skip-bad`` a skipped file)
or an *ignored* entry with its reason (e.g. Br35H's unlabeled ``pred/``); nothing is dropped silently.
A symbolic link whose target is gone is a problem too: it usually stands for an image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import WMoEError
from .registry import DatasetSpec

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

Record = dict
Splits = dict[str, dict[str, list[Record]]]


@dataclass(frozen=True)
class Layout:
    """How to recognise the dataset root inside RAW_DIR.

    ``markers``: alternatives, each a tuple of paths (or glob patterns, e.g. ``test/*_GT.png``) that
    must all exist in the root.
    ``class_folders``: the root holds at least one registry class folder.
    ``root_names``: folder names the root usually has (e.g. ``Kvasir-SEG``), tried first.
    """

    markers: tuple[tuple[str, ...], ...] = ()
    class_folders: bool = False
    root_names: tuple[str, ...] = ()

    def matches(self, path: Path, spec: DatasetSpec) -> bool:
        if self.class_folders and any((path / c).is_dir() for c in spec.classes):
            return True
        return any(all(next(path.glob(m), None) is not None for m in alt) for alt in self.markers)

    def describe(self, spec: DatasetSpec) -> str:
        alts = [" + ".join(alt) for alt in self.markers]
        if self.class_folders:
            alts.append("class folders " + ", ".join(spec.classes))
        return " or ".join(alts)


@dataclass(frozen=True)
class Problem:
    kind: str  # e.g. "missing mask", "orphan mask", "unreadable image", "stray folder"
    path: str  # relative to the dataset root
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.message}"


@dataclass
class Context:
    """State of one conversion: the dataset root, its registry entry, problems, ignored entries, the
    registry classes not found (a partial download: converted without them) and warnings."""

    root: Path
    spec: DatasetSpec
    problems: list[Problem] = field(default_factory=list)
    ignored: list[dict[str, str]] = field(default_factory=list)
    missing_classes: list[str] = field(default_factory=list)
    # Facts the user must see that are no problem (shown by the CLI, kept in prepare.json).
    warnings: list[str] = field(default_factory=list)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def problem(self, kind: str, path: Path, message: str) -> None:
        self.problems.append(Problem(kind, self.rel(path), message))

    def ignore(self, path: Path, reason: str) -> None:
        self.ignored.append({"path": self.rel(path), "reason": reason})

    def present_classes(self, folder_of: Callable[[str], Path]) -> list[str]:
        """Registry classes whose folder (``folder_of(cls)``) exists; the others are noted as missing."""
        present = [c for c in self.spec.classes if folder_of(c).is_dir()]
        self.missing_classes += [c for c in self.spec.classes if c not in present]
        return present

    def require_dir(self, path: Path, what: str) -> Path:
        if not path.is_dir():
            raise WMoEError(
                f"{self.spec.key}: {what} {self.rel(path)!r} not found under {self.root}; "
                f"expected the native layout of {self.spec.description}"
            )
        return path

    def record(self, cls: str, img: Path, mask: Path | None, specie: str, anomaly: int) -> Record:
        return {
            "img_path": self.rel(img),
            "mask_path": self.rel(mask) if mask is not None else "",
            "cls_name": cls,
            "specie_name": specie,
            "anomaly": anomaly,
            "dataset_name": self.spec.key,
        }


def visible_entries(folder: Path) -> list[Path]:
    """Entries of ``folder`` in name order, hidden ones (.DS_Store, ._*) left out."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTS


def list_images(ctx: Context, folder: Path) -> list[Path]:
    """Image files of ``folder`` (any case of the known extensions); anything else is noted as ignored."""
    images = []
    for p in visible_entries(folder):
        if is_image(p):
            images.append(p)
        elif p.is_symlink() and not p.exists():
            ctx.problem("dangling link", p, f"symbolic link to {os.readlink(p)}, which does not exist")
        else:
            ctx.ignore(p, "not an image file" if p.is_file() else "unexpected folder")
    return images


def by_stem(ctx: Context, files: Iterable[Path], what: str) -> dict[str, Path]:
    """Index files by stem; two files with one stem (``7.png`` and ``7.bmp``) are a problem."""
    index: dict[str, Path] = {}
    for f in files:
        if f.stem in index:
            ctx.problem("duplicate stem", f, f"{what} {index[f.stem].name} has the same stem; which one is meant?")
        else:
            index[f.stem] = f
    return index


def match_masks(
    ctx: Context, images: list[Path], mask_dir: Path, suffixes: tuple[str, ...] = ("",)
) -> list[tuple[Path, Path | None]]:
    """Each image with the mask named ``<image stem><suffix>.<any ext>`` in ``mask_dir``, or None.

    A mask without an image and two files with one stem are problems.
    """
    images = list(by_stem(ctx, images, "image").values())
    masks = by_stem(ctx, list_images(ctx, mask_dir) if mask_dir.is_dir() else [], "mask")
    matched, used = [], set()
    for img in images:
        mask = next((masks[img.stem + s] for s in suffixes if img.stem + s in masks), None)
        if mask is not None:
            used.add(mask)
        matched.append((img, mask))
    for mask in masks.values():
        if mask not in used:
            ctx.problem("orphan mask", mask, "mask without an image of the same name")
    return matched


def pair_masks(
    ctx: Context, images: list[Path], mask_dir: Path, suffixes: tuple[str, ...] = ("",)
) -> list[tuple[Path, Path]]:
    """Pair each image with its mask (``match_masks``); an image without a mask is a problem."""
    pairs = []
    for img, mask in match_masks(ctx, images, mask_dir, suffixes):
        if mask is None:
            expected = " or ".join(f"{img.stem}{s}.*" for s in suffixes)
            ctx.problem("missing mask", img, f"anomalous image without a mask ({expected} in {ctx.rel(mask_dir)})")
        else:
            pairs.append((img, mask))
    return pairs


def defect_folder_split(
    ctx: Context, cls: str, split: str, normal: str, mask_suffixes: tuple[str, ...]
) -> list[Record]:
    """MVTec-style ``<cls>/<split>/{<normal>,<defect>...}`` with masks in ``<cls>/ground_truth/<defect>``.

    Normals get ``specie_name='good'`` whatever the folder is called (BTAD: ``ok``). The train
    split keeps its normal folder only.
    """
    split_dir = ctx.root / cls / split
    if split == "train" and not split_dir.is_dir():
        return []
    ctx.require_dir(split_dir, f"class {cls!r} {split} folder")
    records: list[Record] = []
    species = []
    for specie_dir in visible_entries(split_dir):
        if not specie_dir.is_dir():
            ctx.ignore(specie_dir, "not a folder")
            continue
        if specie_dir.name == normal:
            records += [ctx.record(cls, img, None, "good", 0) for img in list_images(ctx, specie_dir)]
        elif split == "train":
            ctx.ignore(specie_dir, "train split: only the normal folder is used")
        else:
            species.append(specie_dir.name)
            mask_dir = ctx.root / cls / "ground_truth" / specie_dir.name
            for img, mask in pair_masks(ctx, list_images(ctx, specie_dir), mask_dir, mask_suffixes):
                records.append(ctx.record(cls, img, mask, specie_dir.name, 1))
    gt = ctx.root / cls / "ground_truth"
    if split == "test" and gt.is_dir():
        for mask_dir in visible_entries(gt):
            if mask_dir.is_dir() and mask_dir.name not in species:
                for mask in list_images(ctx, mask_dir):
                    ctx.problem("orphan mask", mask, f"no test/{mask_dir.name} folder holds its image")
    return records


def ignore_other_folders(ctx: Context) -> None:
    """Folders of the root that are no registry class of this dataset (protocol) are noted as ignored."""
    for p in visible_entries(ctx.root):
        if p.is_dir() and p.name not in ctx.spec.classes:
            ctx.ignore(p, "not a registry class of this dataset")


def defect_folder_dataset(ctx: Context, normal: str = "good", mask_suffixes: tuple[str, ...] = ("",)) -> Splits:
    """The registry classes present in an MVTec-style dataset (absent ones are noted as missing)."""
    ignore_other_folders(ctx)
    classes = ctx.present_classes(lambda cls: ctx.root / cls)
    return {
        split: {cls: defect_folder_split(ctx, cls, split, normal, mask_suffixes) for cls in classes}
        for split in ("train", "test")
    }


def labelled_folders(
    ctx: Context, base: Path, labels: dict[str, tuple[int, str]], excluded: dict[str, str] | None = None
) -> Splits:
    """Image-only sets: each folder of ``labels`` maps to (anomaly, specie_name); one class.

    Folders in ``excluded`` are ignored with their reason; any other folder is a stray-folder
    problem, never counted as anomalous.
    """
    (cls,) = ctx.spec.classes
    excluded = excluded or {}
    records: list[Record] = []
    for name in labels:
        ctx.require_dir(base / name, "labelled folder")
    for p in visible_entries(base):
        if p.is_dir() and p.name in labels:
            anomaly, specie = labels[p.name]
            records += [ctx.record(cls, img, None, specie, anomaly) for img in list_images(ctx, p)]
        elif p.is_dir() and p.name in excluded:
            ctx.ignore(p, excluded[p.name])
        elif p.is_dir():
            ctx.problem("stray folder", p, f"unlabelled folder; only {', '.join(labels)} carry labels")
        else:
            ctx.ignore(p, "not a folder")
    return {"train": {}, "test": {cls: records}}


def image_mask_folders(
    ctx: Context, image_dir: Path, mask_dir: Path, suffixes: tuple[str, ...] = ("",)
) -> Splits:
    """Pixel-only sets (every image anomalous): one class, masks paired by name; specie_name ''."""
    (cls,) = ctx.spec.classes
    ctx.require_dir(image_dir, "image folder")
    ctx.require_dir(mask_dir, "mask folder")
    pairs = pair_masks(ctx, list_images(ctx, image_dir), mask_dir, suffixes)
    return {"train": {}, "test": {cls: [ctx.record(cls, img, mask, "", 1) for img, mask in pairs]}}
