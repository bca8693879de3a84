"""Images for models that see them: which models do, and what an image costs in prompt tokens.

OpenAI's published formulas (an estimate each; the provider's `usage.prompt_tokens` is what is charged):
  - tiles (gpt-4o, gpt-4.1, gpt-4o-mini, o1, o3, gpt-5): the image is scaled to fit 2048 x 2048, then so that its
    shortest side is at most 768; each 512-pixel tile costs `per_tile`, plus `base` once. `low` detail: `base`.
  - patches (gpt-4.1-mini, gpt-4.1-nano, o4-mini, gpt-5-mini, gpt-5-nano and the newer minis): 32-pixel patches,
    the image scaled down until there are at most 1,536 of them, times a multiplier.
Images are sent with `detail: auto`, and reserved as `high` would cost: the bound never falls short.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# model family -> (base, per tile); the longest matching prefix wins.
_TILES = {
    "gpt-4o-mini": (2833, 5667),
    "gpt-4o": (85, 170),
    "chatgpt-4o": (85, 170),
    "gpt-4.1": (85, 170),
    "gpt-4.5": (85, 170),
    "o1": (75, 150),
    "o3": (75, 150),
    "gpt-5": (70, 140),
}
# model family -> patch multiplier
_PATCHES = {
    "gpt-4.1-mini": 1.62,
    "gpt-4.1-nano": 2.46,
    "gpt-5-mini": 1.62,
    "gpt-5-nano": 2.46,
    "gpt-5.4-mini": 1.62,
    "gpt-5.4-nano": 2.46,
    "o4-mini": 1.72,
}


def accepts_images(model: str) -> bool:
    """Whether the model takes image parts: the families above; not gpt-3.5, gpt-4 (but for -turbo, which is
    left out too: reported to refuse images now), o1-mini or o3-mini. An unknown model is taken as text-only."""
    name = model.rsplit("/", 1)[-1].lower()
    if _family(name, _PATCHES) is not None:
        return True
    if any(name == blind or name.startswith(blind) for blind in ("o1-mini", "o3-mini", "gpt-3.5")):
        return False
    if name == "gpt-4" or (name.startswith("gpt-4-") and not name.startswith("gpt-4-turbo")):
        return False
    return _family(name, _TILES) is not None


def image_tokens(model: str, width: int, height: int) -> int:
    """What one image costs in the prompt, at `high` detail (the most `auto` may cost)."""
    name = model.rsplit("/", 1)[-1].lower()
    patch = _family(name, _PATCHES)
    if patch is not None:
        return math.ceil(_patches(width, height) * _PATCHES[patch])
    tile = _family(name, _TILES) or "gpt-4o"
    base, per_tile = _TILES[tile]
    return base + per_tile * _tiles(width, height)


def _tiles(width: int, height: int) -> int:
    w, h = float(max(width, 1)), float(max(height, 1))
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return math.ceil(w / 512) * math.ceil(h / 512)


def _patches(width: int, height: int) -> int:
    w, h = max(width, 1), max(height, 1)
    raw = math.ceil(w / 32) * math.ceil(h / 32)
    if raw <= 1536:
        return raw
    shrink = math.sqrt(1536 * 32 * 32 / (w * h))
    # Scaled so that whole patches across the width fit, as OpenAI's guide does it.
    shrink *= min(math.floor(w * shrink / 32) / (w * shrink / 32), math.floor(h * shrink / 32) / (h * shrink / 32))
    return min(1536, math.ceil(w * shrink / 32) * math.ceil(h * shrink / 32))


def _family(name: str, table: Mapping[str, object]) -> str | None:
    matches = [p for p in table if name == p or name.startswith(p + "-") or name.startswith(p + ".")]
    return max(matches, key=len) if matches else None
