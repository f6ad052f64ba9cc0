"""KolektorSDD2, Bayes-PFL pack (project protocol): ``KSDD2/Metal/test/{good,anomaly}/*.bmp``.

Masks are ``KSDD2/Metal/ground_truth/anomaly/<stem>.png``. The pack's 356/356 set is a fixed random
draw that only the pack reproduces; the official KSDD2 archive (every image with a ``_GT.png``) is
a different variant and is not read here.
"""

from .common import Context, Layout, Splits, defect_folder_dataset

LAYOUT = Layout(class_folders=True, root_names=("KSDD2",))


def convert(ctx: Context) -> Splits:
    return defect_folder_dataset(ctx, normal="good", mask_suffixes=("",))
