"""Reading an image file as a viewer shows it, within a pixel budget: the one reader of every image and
mask (the dataset loader, ``prepare``'s checks, ``predict``).

- EXIF orientation is applied (``ImageOps.exif_transpose``), as image viewers and torchvision's
  readers do: a phone photo tagged "rotated 90°" and a mask drawn on it as it appears on screen are
  read aligned, and sizes are compared after the orientation.
- Pixel budget: an image whose header announces more than ``max_pixels`` pixels is decoded at 1/2,
  1/4 or 1/8 scale by the JPEG decoder itself (PIL ``draft``) when it is a JPEG, and refused undecoded
  otherwise (:class:`ImageTooLarge`). PIL's own decompression-bomb limit is lifted while the header is
  read, so ``max_pixels`` is the one limit: a 20000×20000 JPEG is read at reduced scale, not refused
  as a bomb, and a budget above PIL's default is honoured.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

# 50 megapixels: a 48 MP camera frame still decodes at full size (about 150 MB as RGB).
DEFAULT_MAX_PIXELS = 50_000_000
_JPEG_SCALES = (2, 4, 8)
# EXIF orientations 5-8 swap width and height.
_SWAPS_AXES = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112
# PIL's limit is one module-wide value: it is lifted for one header read at a time.
_LIMIT_LOCK = threading.Lock()


class ImageTooLarge(Exception):
    """An image over the pixel budget that cannot be decoded at a reduced scale (not a JPEG, or too large still)."""


@dataclass
class DecodedImage:
    image: Image.Image  # decoded, oriented as a viewer shows it
    size: tuple[int, int]  # full-resolution (width, height) after orientation, even when decoded reduced
    notes: list[str] = field(default_factory=list)  # what was applied: an orientation, a reduced scale
    orientation: int = 1  # the EXIF orientation applied (1: none)


def _open_header(path: Path) -> Image.Image:
    with _LIMIT_LOCK:
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # the budget below decides instead
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _fit(img: Image.Image, max_pixels: int, limit: str) -> str | None:
    """Make ``img`` decode at most ``max_pixels`` pixels (a JPEG at a reduced DCT scale); a note when reduced."""
    w, h = img.size
    if w * h <= max_pixels:
        return None
    if img.format == "JPEG":
        scale = next((s for s in _JPEG_SCALES if math.ceil(w / s) * math.ceil(h / s) <= max_pixels), None)
        if scale is not None:
            img.draft(img.mode, (math.ceil(w / scale), math.ceil(h / scale)))
            if img.size[0] * img.size[1] <= max_pixels:
                return f"{w}x{h} is over {limit}: decoded at 1/{scale} scale"
    raise ImageTooLarge(f"{w}x{h} = {w * h} pixels is over {limit} and was not decoded")


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, limit: str | None = None) -> DecodedImage:
    """Decode ``path`` oriented as its EXIF says, within ``max_pixels`` (see the module docstring);
    ``limit`` names the budget in messages (default "the limit of N pixels").

    Raises ``FileNotFoundError``, :class:`ImageTooLarge`, and PIL's errors for a file that is not a
    readable image (``UnidentifiedImageError``, ``OSError``, ``SyntaxError``, ``ValueError``).
    """
    path = Path(path)
    # The context closes the file at once (TIFF would keep it open); the pixels stay loaded.
    with _open_header(path) as img:
        w, h = img.size
        note = _fit(img, max_pixels, limit or f"the limit of {max_pixels} pixels")
        notes = [note] if note else []
        img.load()
        # After the size check: a PNG reads its EXIF chunk by decoding the whole image.
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation not in range(2, 9):
        return DecodedImage(img, (w, h), notes)
    notes.append(f"EXIF orientation {orientation} applied")
    size = (h, w) if orientation in _SWAPS_AXES else (w, h)
    return DecodedImage(ImageOps.exif_transpose(img), size, notes, orientation)
