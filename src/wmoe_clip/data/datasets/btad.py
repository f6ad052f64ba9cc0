"""BTAD: ``{01,02,03}/{train/ok,test/{ok,ko}}``, masks ``ground_truth/ko/<id>.<ext>``.

Pitfalls handled: the normal folder is ``ok`` (recorded as specie ``good``), and images and masks
mix ``.bmp`` and ``.png``, so they are paired by stem whatever the extensions (never by sort order).
"""

from ..convert import Context, Layout, Splits, defect_folder_dataset
from ..synth.writer import Shape, Writer, write_defect_folders

LAYOUT = Layout(class_folders=True, root_names=("BTech_Dataset_transformed",))


def convert(ctx: Context) -> Splits:
    return defect_folder_dataset(ctx, normal="ok", mask_suffixes=("",))


SHAPE = Shape(height=(64, 80), width=(64, 80))
# Per class: (image extension, mask extension) of the stand-in.
EXTS = {"01": ("bmp", "png"), "02": ("png", "png"), "03": ("bmp", "bmp")}


def write(w: Writer, size: int) -> None:
    # Real BTAD mixes .bmp and .png between products (and between images and masks); class 02
    # alternates within the class so that pairing must ignore extensions.
    def img_ext(cls: str, i: int) -> str:
        return ("png", "bmp")[i % 2] if cls == "02" else EXTS[cls][0]

    write_defect_folders(w, size, "ok", lambda _: "ko", lambda i: f"{i:04d}", img_ext,
                         lambda c, i: "{stem}." + EXTS[c][1], prefix="BTech_Dataset_transformed/")
