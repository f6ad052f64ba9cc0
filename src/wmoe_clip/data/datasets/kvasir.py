"""Kvasir-SEG: ``Kvasir-SEG/{images,masks}/<id>.jpg`` with the same name in both, plus a bbox JSON.

All 1,000 images, pixel-only. The masks are JPEG, so their edges carry compression noise; the
registry's ``mask_threshold`` (127: foreground iff value >= 128) goes into meta.json for the loader.
"""

import json

from ..convert import Context, Layout, Splits, image_mask_folders
from ..synth.textures import stable_seed
from ..synth.writer import Shape, Writer, image_mask_writer, split_counts

LAYOUT = Layout(markers=(("images", "masks"),), root_names=("Kvasir-SEG",))


def convert(ctx: Context) -> Splits:
    return image_mask_folders(ctx, ctx.root / "images", ctx.root / "masks")


SHAPE = Shape(height=(64, 88), width=(64, 96))


def write(w: Writer, size: int) -> None:
    ids = [f"cju{stable_seed('kvasir', i) % 16**8:08x}" for i in range(split_counts(w.spec, size)[1])]
    # JPEG masks: compression noise around the edges, as in the real Kvasir-SEG.
    image_mask_writer("Kvasir-SEG/images", "Kvasir-SEG/masks", ids.__getitem__, "jpg", "{stem}.jpg")(w, size)
    w.target("Kvasir-SEG/kavsir_bboxes.json").write_text(json.dumps({i: {"bbox": []} for i in ids}))
