"""Photos as customers send them: real PNG files of a given size."""

from __future__ import annotations

import io

from PIL import Image


def photo(width: int, height: int, color: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()
