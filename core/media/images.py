"""A customer's photo, made ready for a vision model: its format and size checked (Pillow reads the header only),
and the bytes as a data URL. OpenAI takes JPEG, PNG, WebP and non-animated GIF."""

from __future__ import annotations

import base64
import io

from PIL import Image, UnidentifiedImageError

from core.chat import ImagePart

_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
# Pillow's own guard against decompression bombs, set here rather than left to its global default.
MAX_PIXELS = 50_000_000


class ImageRefused(Exception):
    """Not an image a model reads (another format, an animation, damaged, absurdly large); the message says why."""


def image_part(data: bytes) -> ImagePart:
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format or "", image.size
            animated = bool(getattr(image, "is_animated", False))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise ImageRefused(f"the file is not an image that can be read ({type(exc).__name__})") from None
    mime = _FORMATS.get(kind)
    if mime is None:
        raise ImageRefused(f"images of format {kind or 'unknown'} are not shown to the model")
    if animated:
        raise ImageRefused("animated images are not shown to the model")
    if width * height > MAX_PIXELS:
        raise ImageRefused(f"the image is {width} x {height} pixels, too large to show to the model")
    return ImagePart(f"data:{mime};base64,{base64.b64encode(data).decode()}", width, height)
