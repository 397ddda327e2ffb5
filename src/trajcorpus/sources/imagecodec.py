"""Decode encoded images (JPEG/PNG/...) from untrusted bytes, with a pixel budget.

Every reader that meets image bytes (COCO files, img2dataset/HF JPEGs, RLU PNG frames, RLDS encoded
images) decodes through here, so a decompression bomb or a corrupt file becomes a SourceError naming
where it came from instead of a crash or an out-of-memory.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from ..errors import SourceError

__all__ = ["MAX_PIXELS", "decode_image"]

MAX_PIXELS = 64 * 1024 * 1024  # 64 MPixel: far above any training image, far below a bomb


def decode_image(data: bytes, uri: str, *, key: str | None = None, offset: int | None = None,
                 mode: str | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Bytes -> uint8 array [H, W] (L) or [H, W, C]; ``mode`` converts (e.g. "RGB", "L").

    Palette and 16-bit images are converted to RGB / L explicitly (see docs/tokenization.md).
    """

    def fail(reason: str) -> SourceError:
        return SourceError(uri, reason, offset=offset, key=key)

    if not data:
        raise fail("empty image bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise fail(f"image of {w}x{h} pixels exceeds the limit of {max_pixels} pixels")
            img.load()
    except SourceError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise fail(f"decompression bomb refused: {e}") from None
    except Exception as e:  # PIL raises many types for corrupt data (OSError, SyntaxError, ...)
        raise fail(f"cannot decode image: {type(e).__name__}: {e}") from None
    if mode is not None and img.mode != mode:
        img = img.convert(mode)
    elif img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
        # "LAB" holds an "A" channel that is no alpha: only PA or a transparency key is
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    elif img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        img = img.convert("L")
    elif img.mode == "LA":
        img = img.convert("RGBA")
    arr = np.asarray(img, dtype=np.uint8)
    return arr
