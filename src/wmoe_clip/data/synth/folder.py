"""The synthetic stand-in of a user's own dataset, as ``wmoe-clip prepare folder`` reads it.

Two forms: class folders in the MVTec convention (``write_folder``) and a CSV listing
(``write_folder_csv``, ``synth folder --protocol csv``), each with what users' folders carry: a
stray file, an image-only class, a class with an anomalous image without a mask, and a pixel-only
class.
"""

from __future__ import annotations

import csv
import io

from .writer import Shape, Writer, split_counts

SHAPE = Shape(height=(64, 72), width=(64, 72))

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


# The two forms by ``synth folder --protocol``: class folders (none) and a CSV listing.
WRITERS = {None: write_folder, "csv": write_folder_csv}
