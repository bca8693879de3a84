"""Voice notes as WhatsApp sends them: Ogg files with an Opus header, of a given length, distinct per `words`."""

from __future__ import annotations

import struct


def _page(granule: int, serial: int, sequence: int, payload: bytes, header_type: int = 0) -> bytes:
    segments = [255] * (len(payload) // 255) + [len(payload) % 255]
    return (
        b"OggS"
        + struct.pack("<BBqIIIB", 0, header_type, granule, serial, sequence, 0, len(segments))
        + bytes(segments)
        + payload
    )


def voice_note(seconds: float, words: str = "") -> bytes:
    """An Ogg Opus file lasting `seconds` (its last page's granule position); `words` make its bytes unique."""
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 48_000, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 4) + b"test" + struct.pack("<I", 0)
    audio = words.encode().replace(b"OggS", b"oggs") or b"\x00"
    return (
        _page(0, 7, 0, head, header_type=2)
        + _page(0, 7, 1, tags)
        + _page(int(seconds * 48_000), 7, 2, audio, header_type=4)
    )
