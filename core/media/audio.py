"""Reading audio just enough to bound and name it, without decoding it.

- Duration: an Ogg file (WhatsApp voice notes: Opus in Ogg) says it in the granule position of its last page
  (48,000 per second for Opus, the sample rate of Vorbis otherwise). Other containers are bounded by their size at
  the lowest bitrate a voice note is sent at (8 kbit/s), which can only overstate the length.
- The name the transcription endpoint gets: OpenAI reads the format from the file name's extension, and refuses
  `.oga` and `.opus` for the same bytes it takes as `.ogg`; so each MIME type maps to a name it accepts.
"""

from __future__ import annotations

import struct

# MIME type -> the file name /audio/transcriptions accepts it under (OpenAI: flac, mp3, mp4, mpeg, mpga, m4a, ogg,
# wav, webm). AMR (some old WhatsApp clients) is not among them: refused before any call.
UPLOAD_NAMES = {
    "audio/ogg": "voice.ogg",
    "audio/opus": "voice.ogg",
    "audio/mpeg": "audio.mp3",
    "audio/mp3": "audio.mp3",
    "audio/mp4": "audio.m4a",
    "audio/m4a": "audio.m4a",
    "audio/x-m4a": "audio.m4a",
    "audio/aac": "audio.m4a",
    "video/mp4": "audio.mp4",  # Messenger voice clips come as MP4 (AAC)
    "audio/wav": "audio.wav",
    "audio/x-wav": "audio.wav",
    "audio/webm": "audio.webm",
    "audio/flac": "audio.flac",
}
LOWEST_BITRATE = 8_000  # bits per second: an unknown container's length is bounded at this rate
# No voice codec needs more (Opus tops out at 510 kbit/s): a declared length shorter than the bytes allow at this
# rate is a forged or damaged header, and the bytes' bound is used instead.
HIGHEST_BITRATE = 512_000


def upload_name(mime_type: str) -> str | None:
    """The file name to send the audio under, or None when the transcription endpoint does not read it."""
    return UPLOAD_NAMES.get(mime_type)


def seconds_at_most(data: bytes, mime_type: str) -> float:
    """How long the audio lasts, as its container declares it (Ogg, MP4), never less than its bytes take at the
    highest bitrate; a bound from its size at the lowest bitrate when nothing is declared."""
    declared = ogg_seconds(data) if data[:4] == b"OggS" else mp4_seconds(data)
    if declared is None:
        return len(data) * 8 / LOWEST_BITRATE
    return max(declared, len(data) * 8 / HIGHEST_BITRATE)


def mp4_seconds(data: bytes) -> float | None:
    """The duration an MP4/M4A file declares in its movie header (`mvhd`), or None if it has none."""
    at = data.find(b"mvhd", 0, 1 << 20)
    if at < 4:
        return None
    version = data[at + 4] if len(data) > at + 4 else 0
    try:
        if version == 1:
            timescale, duration = struct.unpack_from(">IQ", data, at + 4 + 4 + 16)
        else:
            timescale, duration = struct.unpack_from(">II", data, at + 4 + 4 + 8)
    except struct.error:
        return None
    return duration / timescale if timescale else None


def ogg_seconds(data: bytes) -> float | None:
    """The duration an Ogg stream declares (its last page's granule position), or None if it is not one."""
    if data[:4] != b"OggS":
        return None
    last = data.rfind(b"OggS")
    if last < 0 or len(data) < last + 14:
        return None
    (granule,) = struct.unpack_from("<q", data, last + 6)
    if granule < 0:
        return None
    rate = 48_000 if b"OpusHead" in data[:200] else _vorbis_rate(data)
    return granule / rate if rate else None


def _vorbis_rate(data: bytes) -> int | None:
    at = data.find(b"\x01vorbis", 0, 200)
    if at < 0 or len(data) < at + 16:
        return None
    (rate,) = struct.unpack_from("<I", data, at + 12)
    return rate or None
