"""What customers send that is not text: downloading it from Meta (download.py), reading audio (audio.py) and
transcribing voice notes, paid for like any model call (transcriber.py)."""
