"""Offline token counting with tiktoken's own Encoding class.

`tiktoken.get_encoding` downloads the BPE rank files from OpenAI's blob store on first use, and
CI and production hosts have no network. The project therefore ships gzipped copies of the exact
published rank files in `data/tokenizers/`. This module verifies them against tiktoken's expected
hashes and builds real `tiktoken.Encoding` objects from them, so the counts are the ones tiktoken
itself would produce. Chat prompts are counted with the OpenAI cookbook's
`num_tokens_from_messages` rule. That rule is exact for gpt-3.5/gpt-4/gpt-4o and an estimate for
newer models; `usage.prompt_tokens` from the API stays authoritative for billing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ctypes
import ctypes.util
import functools
import gzip
import hashlib
import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import tiktoken
import tiktoken.model
from tiktoken_ext.openai_public import ENDOFPROMPT, ENDOFTEXT, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

from core.chat import ChatMessage, Tool

__all__ = ["TokenCounter", "TokenizerError", "encoding_name_for_model"]

_CHECK_PIECE = 64 * 1024  # under glibc's threshold for a mapping of its own: the heap reuses the buffer
_DEFAULT_ENCODING = "o200k_base"

# Cookbook framing constants (examples/How_to_count_tokens_with_tiktoken.ipynb, current version):
# every message is wrapped in <|start|>{role}<|message|>{content}<|end|>, a name costs one more
# token, and every reply is primed with <|start|>assistant<|message|>.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING_TOKENS = 3


class TokenizerError(RuntimeError):
    """A shipped tokenizer file is missing, unreadable or does not match tiktoken's hash."""


@dataclass(frozen=True, slots=True)
class _EncodingSpec:
    """Everything needed to build one encoding from a local rank file."""

    name: str
    file_name: str
    expected_sha256: str
    pat_str: str
    special_tokens: Mapping[str, int]


# expected_hash, pat_str and special tokens are copied verbatim from the `cl100k_base()` and
# `o200k_base()` constructors in tiktoken_ext/openai_public.py (tiktoken 0.14.0). The module only
# exposes the special-token names as constants; calling the constructors would trigger a download.
# tests/test_tokens.py checks these values against the installed tiktoken so drift is caught.
_SPECS: Mapping[str, _EncodingSpec] = MappingProxyType(
    {
        "cl100k_base": _EncodingSpec(
            name="cl100k_base",
            file_name="cl100k_base.tiktoken.gz",
            expected_sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
            pat_str=(
                r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
                r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
            ),
            special_tokens=MappingProxyType(
                {
                    ENDOFTEXT: 100257,
                    FIM_PREFIX: 100258,
                    FIM_MIDDLE: 100259,
                    FIM_SUFFIX: 100260,
                    ENDOFPROMPT: 100276,
                }
            ),
        ),
        "o200k_base": _EncodingSpec(
            name="o200k_base",
            file_name="o200k_base.tiktoken.gz",
            expected_sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
            pat_str="|".join(
                [
                    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                    r"""\p{N}{1,3}""",
                    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                    r"""\s*[\r\n]+""",
                    r"""\s+(?!\S)""",
                    r"""\s+""",
                ]
            ),
            special_tokens=MappingProxyType({ENDOFTEXT: 199999, ENDOFPROMPT: 200018}),
        ),
    }
)


@functools.lru_cache(maxsize=512)
def encoding_name_for_model(model: str) -> str:
    """Name of the shipped encoding to count `model` with.

    Uses tiktoken's own model table. Unknown models (e.g. a bare "o4" or a non-OpenAI name) fall
    back to o200k_base, as the current cookbook does. Models that map to an encoding we do not
    ship (o200k_harmony for gpt-oss-*, r50k/p50k for retired models, gpt2) also fall back to
    o200k_base: counts for them are estimates anyway, and o200k_harmony shares o200k's ranks.
    """
    try:
        name = tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        return _DEFAULT_ENCODING
    return name if name in _SPECS else _DEFAULT_ENCODING


def _parse_ranks(contents: bytes, path: Path) -> dict[bytes, int]:
    """Parse the `<base64 token> <rank>` lines of a .tiktoken file, as tiktoken.load does.

    Parsed here rather than via `tiktoken.load.load_tiktoken_bpe`, because that function routes
    through tiktoken's download cache and would write a copy into the system temp directory.
    """
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error) as exc:
            raise TokenizerError(f"malformed line {line[:40]!r} in tokenizer file {path}") from exc
    return ranks


def _verified_contents(spec: _EncodingSpec, tokenizer_dir: Path) -> bytes:
    """The tokenizer file's decompressed contents, once their sha256 is the published file's."""
    path = tokenizer_dir / spec.file_name
    try:
        contents = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise TokenizerError(f"cannot read tokenizer file {path}: {exc}") from exc
    _compare(spec, path, hashlib.sha256(contents).hexdigest())
    return contents


def _check_file(spec: _EncodingSpec, tokenizer_dir: Path) -> None:
    """`_verified_contents` without keeping them: read in pieces small enough for the C library to reuse (a
    whole file's buffer, freed, left 2.4 MB more resident in a serving process, measured with bench.relay)."""
    path = tokenizer_dir / spec.file_name
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as file:
            while piece := file.read(_CHECK_PIECE):
                digest.update(piece)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise TokenizerError(f"cannot read tokenizer file {path}: {exc}") from exc
    _compare(spec, path, digest.hexdigest())


def _compare(spec: _EncodingSpec, path: Path, actual: str) -> None:
    if actual != spec.expected_sha256:
        raise TokenizerError(
            f"tokenizer file {path} is corrupt or not the published {spec.name} file: "
            f"sha256 of its decompressed contents is {actual}, expected {spec.expected_sha256}"
        )


def _load_encoding(spec: _EncodingSpec, tokenizer_dir: Path) -> tiktoken.Encoding:
    path = tokenizer_dir / spec.file_name
    contents = _verified_contents(spec, tokenizer_dir)
    encoding = tiktoken.Encoding(
        name=spec.name,
        pat_str=spec.pat_str,
        mergeable_ranks=_parse_ranks(contents, path),
        special_tokens=dict(spec.special_tokens),
    )
    # The encoder (Rust) holds its own copy of the ranks; the Encoding keeps the Python dict only to be pickled,
    # which we never do, and that dict is 26 MB of o200k_base's 70 (measured as resident memory).
    encoding._mergeable_ranks = {}
    _give_back_freed_memory()
    return encoding


def _give_back_freed_memory() -> None:
    """Hand the heap the parse freed back to the system (glibc keeps it otherwise: about 5 MB of resident memory
    after o200k_base's ranks are built); a no-op on a C library without malloc_trim."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return
    if trim is not None:
        trim(0)


class TokenCounter:
    """Counts tokens for OpenAI chat models from the tokenizer files in `tokenizer_dir`.

    An encoding is loaded when a model that needs it is first counted for (0.3 s and 44 MB for o200k_base, 0.1 s
    and 30 MB for cl100k_base, measured here), then kept: a gateway whose plans offer only gpt-4o models never loads
    cl100k_base. `load(model)` loads it on the calling thread (the gateway loads its plans' encodings so at start,
    before it listens: core/tokenizer_warmup.py); `await ready(model)` loads it on a thread, so the event loop keeps
    serving meanwhile; a count without either loads inline. `preload()` loads both (tests, benchmarks).
    """

    __slots__ = ("_encodings", "_loading", "_lock", "_steady", "_tokenizer_dir")

    def __init__(self, tokenizer_dir: Path) -> None:
        self._tokenizer_dir = tokenizer_dir
        self._encodings: dict[str, tiktoken.Encoding] = {}
        # Counts of texts that recur turn after turn (a bot's persona, a role's name), by encoding and text.
        self._steady = functools.lru_cache(maxsize=1024)(self._count_in)
        # A lock so that preload() running in a worker thread and a request on the event loop
        # never build the same encoding twice or observe a half-filled cache.
        self._lock = threading.Lock()
        self._loading: dict[str, asyncio.Future[tiktoken.Encoding]] = {}

    def check_files(self) -> None:
        """Each shipped tokenizer file is there, whole and the published one (its sha256; at start-up, so a broken
        install fails at once, not at the first message on a model that needs it). 35-45 ms for both files here;
        an encoding already loaded was checked when it was."""
        for name, spec in _SPECS.items():
            if name not in self._encodings:
                _check_file(spec, self._tokenizer_dir)

    def preload(self) -> None:
        """Load and verify every shipped encoding now; raises TokenizerError on a bad file."""
        for name in _SPECS:
            self._encoding(name)

    def load(self, model: str) -> None:
        """Load the encoding `model` is counted with now, on this thread, unless it is loaded. Raises TokenizerError
        for a bad file. On the main thread the load leaves 4-5 MB less resident memory than on a worker thread, to
        which glibc gives an arena of its own (measured at start-up, o200k_base)."""
        self._encoding(encoding_name_for_model(model))

    def loaded(self) -> frozenset[str]:
        """The encodings loaded so far, by name."""
        return frozenset(self._encodings)

    async def ready(self, model: str) -> None:
        """Load the encoding `model` is counted with, on a thread, unless it is loaded; one load however many
        callers wait for it. Raises TokenizerError for a bad file, as a count would."""
        name = encoding_name_for_model(model)
        if name in self._encodings:
            return
        loading = self._loading.get(name)
        if loading is None or (loading.done() and (loading.cancelled() or loading.exception() is not None)):
            loading = asyncio.ensure_future(asyncio.to_thread(self._encoding, name))
            self._loading[name] = loading
        await asyncio.shield(loading)

    def count_text(self, model: str, text: str) -> int:
        """Number of tokens `text` encodes to for `model`; special-token text is plain text."""
        return len(self._encode(self._encoding(encoding_name_for_model(model)), text))

    def count_steady(self, model: str, text: str) -> int:
        """`count_text` for a text that comes back turn after turn (a persona): counted once, then remembered."""
        return self._steady(encoding_name_for_model(model), text)

    def framed(self, model: str, role: str, content_tokens: int) -> int:
        """What a message of `role` whose content counts `content_tokens` adds to a prompt, by the cookbook's rule:
        a stored message's own count makes its share of a prompt without encoding it again."""
        return _TOKENS_PER_MESSAGE + self._steady(encoding_name_for_model(model), role) + content_tokens

    def _count_in(self, encoding: str, text: str) -> int:
        return len(self._encode(self._encoding(encoding), text))

    def count_messages(self, model: str, messages: Sequence[ChatMessage]) -> int:
        """Prompt tokens for a chat request, by the cookbook's `num_tokens_from_messages` rule."""
        name = encoding_name_for_model(model)
        encoding = self._encoding(name)
        total = 0
        for message in messages:
            total += _TOKENS_PER_MESSAGE
            total += self._steady(name, message.role)
            total += len(self._encode(encoding, message.content))
            if message.name is not None:
                total += len(self._encode(encoding, message.name)) + _TOKENS_PER_NAME
        return total + _REPLY_PRIMING_TOKENS

    def count_tools(self, model: str, tools: Sequence[Tool]) -> int:
        """What offering `tools` adds to a prompt, by the cookbook's `num_tokens_for_tools` rule (the gpt-4o
        constants; gpt-3.5 and gpt-4 open each function with 3 more). 0 for no tools."""
        if not tools:
            return 0
        encoding = self._encoding(encoding_name_for_model(model))
        func_init = 10 if encoding_name_for_model(model) == "cl100k_base" else 7
        total = 0
        for tool in tools:
            total += func_init + len(self._encode(encoding, f"{tool.name}:{tool.description.removesuffix('.')}"))
            if tool.parameters:
                total += 3  # prop_init
                for p in tool.parameters:
                    total += 3  # prop_key
                    if p.enum:
                        total += -3 + sum(3 + len(self._encode(encoding, item)) for item in p.enum)
                    line = f"{p.name}:{p.type}:{p.description.removesuffix('.')}"
                    total += len(self._encode(encoding, line))
        return total + 12  # func_end

    def _encoding(self, name: str) -> tiktoken.Encoding:
        encoding = self._encodings.get(name)
        if encoding is not None:
            return encoding
        with self._lock:
            encoding = self._encodings.get(name)
            if encoding is None:
                encoding = _load_encoding(_SPECS[name], self._tokenizer_dir)
                self._encodings[name] = encoding
            return encoding

    @staticmethod
    def _encode(encoding: tiktoken.Encoding, text: str) -> list[int]:
        # encode_ordinary treats "<|endoftext|>" typed by a user as ordinary text instead of
        # raising (encode's default) or emitting a real special token.
        return encoding.encode_ordinary(text)
