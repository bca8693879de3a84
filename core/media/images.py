"""A customer's photo, made ready for a vision model: its format and size checked (Pillow reads the header only),
and the bytes as a data URL. OpenAI takes JPEG, PNG, WebP and non-animated GIF."""

from __future__ import annotations

import base64
import io

from core.chat import ImagePart

_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
# Pillow's own guard against decompression bombs, set here rather than left to its global default.
MAX_PIXELS = 50_000_000


class ImageRefused(Exception):
    """Not an image a model reads (another format, an animation, damaged, absurdly large); the message says why."""


def image_part(data: bytes) -> ImagePart:
    from PIL import (
        Image,
        UnidentifiedImageError,
    )  # Pillow loads with the first photo: a text-only gateway never needs it

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


# What OpenAI makes of an image at high detail before it looks at it: it fits within 2048 x 2048, then its shorter
# side comes down to 768. A kept photo is stored at that size: the model sees the same, at a fraction of the bytes.
_FIT, _SHORT_SIDE, _KEPT_QUALITY = 2048, 768, 85


def kept_copies(parts: tuple[ImagePart, ...]) -> tuple[ImagePart, ...]:
    """The photos as a conversation keeps them (a bot's keep_images): JPEG at the size the model sees, turned
    upright, without their metadata (a phone's photo carries where it was taken)."""
    return tuple(_kept_copy(part) for part in parts)


def _kept_copy(part: ImagePart) -> ImagePart:
    from PIL import Image, ImageOps  # see image_part

    data = base64.b64decode(part.url.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as opened:
        upright = ImageOps.exif_transpose(opened)
    if upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info:  # JPEG has no alpha: on white
        rgba = upright.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    else:
        image = upright.convert("RGB")
    image.thumbnail((_FIT, _FIT))
    if min(image.size) > _SHORT_SIDE:
        scale = _SHORT_SIDE / min(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=_KEPT_QUALITY)  # no exif= given: none is written
    return ImagePart(f"data:image/jpeg;base64,{base64.b64encode(out.getvalue()).decode()}", image.width, image.height)
