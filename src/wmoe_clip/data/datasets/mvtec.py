"""MVTec AD: ``<cls>/{train,test}/<specie>/*.png``, masks ``<cls>/ground_truth/<defect>/<id>_mask.png``.

Class folders are the registry's (``metal_nut`` with an underscore); the top-level ``license.txt``
and ``readme.txt`` are ignored.
"""

from ..convert import Context, Layout, Splits, defect_folder_dataset
from ..synth.writer import Shape, Writer, write_defect_folders

LAYOUT = Layout(class_folders=True, root_names=("mvtec_anomaly_detection",))


def convert(ctx: Context) -> Splits:
    return defect_folder_dataset(ctx, normal="good", mask_suffixes=("_mask",))


SHAPE = Shape(height=(64, 64), width=(64, 64))


def write(w: Writer, size: int) -> None:
    (w.root / "license.txt").write_text("CC BY-NC-SA 4.0 (synthetic stand-in)\n")
    (w.root / "readme.txt").write_text("MVTec AD layout, synthetic stand-in\n")
    write_defect_folders(w, size, "good", Writer.defect_kind, lambda i: f"{i:03d}",
                         lambda c, i: "png", lambda c, i: "{stem}_mask.png")
