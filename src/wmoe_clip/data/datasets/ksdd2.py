"""KolektorSDD2 in two layouts, three protocols (registry ``ksdd2.protocols``).

- ``bayes-pfl`` (project protocol): Bayes-PFL's pack, ``KSDD2/Metal/test/{good,anomaly}/*.bmp`` with
  masks ``KSDD2/Metal/ground_truth/anomaly/<stem>.png``. Its 356/356 set is a fixed random draw that
  only the pack reproduces.
- ``official``: the ViCoS archive (``KolektorSDD2.zip``): ``train/`` and ``test/``, each image
  ``<id>.png`` beside its ``<id>_GT.png``. Every image has a GT; an image is anomalous iff its GT has a
  pixel above the mask threshold, so an all-zero GT is a normal image (as ViCoS' and SuperSimpleNet's
  loaders read it). The test split.
- ``official-balanced``: the same archive, every positive of train and test plus as many negatives
  drawn without replacement by ``numpy.random.default_rng(balance_seed)`` from all negatives in path
  order: the size of the pack's set, not its draw.

Files not named ``<digits>.png`` / ``<digits>_GT.png`` (the archive's ``train/10301 (copy).png``, a
duplicate without a GT) are listed as ignored. Detection: a ``Metal`` class folder is the pack,
``test/*_GT.png`` the official archive; ``official-balanced`` is chosen with ``--protocol``.
"""

import re

import numpy as np

from ...errors import WMoEError
from ..images import ImageTooLarge, read_image
from ..masks import mask_values
from ..convert import Context, Layout, Record, Splits, by_stem, defect_folder_dataset, is_image, visible_entries
from ..synth.writer import Shape, Writer, bayes_pfl_writer, split_counts
from . import Protocol

ID = re.compile(r"^\d+$")
GT = "_GT"
OFFICIAL = Layout(markers=(("test/*_GT.png",),), root_names=("KolektorSDD2",))


def _pack(ctx: Context) -> Splits:
    return defect_folder_dataset(ctx, normal="good", mask_suffixes=("",))


def _has_defect(ctx: Context, gt) -> bool | None:
    """Whether the GT has a foreground pixel; None (a problem) when it cannot be decoded."""
    try:
        return bool((mask_values(read_image(gt).image) > ctx.spec.mask_threshold).any())
    except (ImageTooLarge, OSError, ValueError, SyntaxError) as exc:
        ctx.problem("unreadable mask", gt, f"cannot be decoded ({exc})")
        return None


def _split(ctx: Context, split: str) -> tuple[list[Record], list[Record]]:
    """(normal, anomalous) records of one split folder of the official archive, in id order."""
    folder = ctx.require_dir(ctx.root / split, f"{split} folder")
    (cls,) = ctx.spec.classes
    images, gts = [], []
    for p in visible_entries(folder):
        if is_image(p) and ID.match(p.stem):
            images.append(p)
        elif is_image(p) and p.stem.endswith(GT) and ID.match(p.stem[: -len(GT)]):
            gts.append(p)
        else:
            ctx.ignore(p, "not a KolektorSDD2 <id>.png or <id>_GT.png file")
    gt_of = by_stem(ctx, gts, "GT")
    normal, anomalous = [], []
    for img in by_stem(ctx, images, "image").values():
        gt = gt_of.pop(img.stem + GT, None)
        if gt is None:
            ctx.problem("missing mask", img, f"no {img.stem}{GT}.png beside it (every KSDD2 image has a GT)")
            continue
        defect = _has_defect(ctx, gt)
        if defect is not None:
            rec = ctx.record(cls, img, gt if defect else None, "defect" if defect else "good", int(defect))
            (anomalous if defect else normal).append(rec)
    for gt in gt_of.values():
        ctx.problem("orphan mask", gt, "GT without an image of the same id")
    return normal, anomalous


def _official(ctx: Context) -> Splits:
    if (ctx.root / "train").is_dir():
        ctx.ignore(ctx.root / "train", "train split: not part of the zero-shot test set")
    (cls,) = ctx.spec.classes
    normal, anomalous = _split(ctx, "test")
    return {"train": {}, "test": {cls: normal + anomalous}}


def _official_balanced(ctx: Context) -> Splits:
    (cls,) = ctx.spec.classes
    normal, anomalous = [], []
    for split in ("train", "test"):
        n, a = _split(ctx, split)
        normal += n
        anomalous += a
    if len(normal) < len(anomalous):
        raise WMoEError(f"ksdd2: {ctx.root} holds {len(anomalous)} positives but only {len(normal)} negatives; "
                        "a balanced draw needs at least as many negatives")
    normal.sort(key=lambda r: r["img_path"])
    rng = np.random.default_rng(ctx.spec.balance_seed)
    drawn = sorted(rng.choice(len(normal), size=len(anomalous), replace=False).tolist())
    if len(normal) > len(drawn):
        ctx.ignored.append({"path": ".", "reason": f"{len(normal) - len(drawn)} of {len(normal)} negatives "
                            f"left out by the balanced draw (balance_seed {ctx.spec.balance_seed})"})
    return {"train": {}, "test": {cls: [normal[i] for i in drawn] + anomalous}}


def _write_official(w: Writer, size: int) -> None:
    """ViCoS' KolektorSDD2.zip: ``{train,test}/<id>.png`` each with a ``<id>_GT.png``, all-zero for normals.

    Train holds positives too (the balanced protocol draws from both splits), and the archive's
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


SHAPE = Shape(height=(96, 112), width=(40, 44), grey=True)
PROTOCOLS = {
    "bayes-pfl": Protocol(Layout(class_folders=True, root_names=("KSDD2",)), _pack, bayes_pfl_writer("KSDD2")),
    "official": Protocol(OFFICIAL, _official, _write_official),
    "official-balanced": Protocol(OFFICIAL, _official_balanced, _write_official),
}
