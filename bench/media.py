"""Media benchmark: what a voice-note turn and a photo turn add over a text turn, in time and in cost.

    python -m bench.media [--turns 40] [--seconds 8] [--photo 1024x768]

The real gateway app (a temporary SQLite file, 4 inbox workers), the fake OpenAI (counting tokens with tiktoken,
as OpenAI reports them; zero latency) and the fake Graph API (serving the media) run in this process on random
local ports. A tenant with a WhatsApp channel is provisioned through the admin API. Then, one at a time, --turns
signed WhatsApp deliveries of each kind, each from a new customer (no memory grows): a text message (the
baseline, measured in the same run), a voice note of --seconds (downloaded through Graph's media node with the
channel's token, transcribed, then answered) and a PNG photo of --photo pixels with a caption (downloaded, shown
to the model as an image part). Per kind: time from the delivery's acknowledgement to the reply reaching Graph
(p50, p90), this process's CPU per turn, and tokens and cost per turn from the usage rows (priced from
data/prices.json). With zero-latency fakes the time is the gateway's own work plus the local HTTP round trips:
a real model and a real transcription add their own time on top.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import local_settings, provision_with_channel, serving
from core.chat import ChatMessage
from core.tokens import TokenCounter
from gateway.app import create_app, gc_for_serving
from gateway.logging import configure_logging
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from tests.support.audio import voice_note
from tests.support.images import photo

PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"
# Made afresh for each run: the webhooks' app secret, the admin tokens' key and the key sealing channel tokens.
APP_SECRET = secrets.token_hex(16)
JWT_SECRET = secrets.token_hex(32)
SECRETS_KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
PHONE_ID = "109000000000001"


@dataclass
class Figures:
    kind: str
    seconds: list[float]
    cpu: float  # seconds of this process's CPU over the kind's turns
    tokens: int
    cost_nanousd: int
    turns: int


def _signed(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    digest = hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


def _delivery(wamid: str, customer: str, content: dict[str, Any]) -> dict[str, Any]:
    message = {"from": customer, "id": wamid, "timestamp": str(int(time.time())), **content}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": PHONE_ID},
        "contacts": [{"profile": {"name": "Bench"}, "wa_id": customer}],
        "messages": [message],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }


async def _turn(
    session: aiohttp.ClientSession, base: str, graph: FakeGraph, body: dict[str, Any], customer: str
) -> float:
    raw, headers = _signed(body)
    async with session.post(f"{base}/webhooks/whatsapp", data=raw, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"the webhook answered {response.status}")
    started = time.perf_counter()
    while not graph.texts_to("+" + customer):
        if time.perf_counter() - started > 30:
            raise RuntimeError(f"no reply to {customer} within 30 s")
        await asyncio.sleep(0.0005)
    return time.perf_counter() - started


def _usage(database: Path, since_ms: int) -> tuple[int, int]:
    with sqlite3.connect(database) as db:
        row = db.execute(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0), COALESCE(SUM(cost_nanousd), 0)"
            " FROM usage_records WHERE created_at >= ?",
            (since_ms,),
        ).fetchone()
    return int(row[0]), int(row[1])


async def run(args: argparse.Namespace) -> int:
    configure_logging("WARNING", "console")
    tokens = TokenCounter(PROJECT_DATA / "tokenizers")
    tokens.preload()

    def count_prompt(model: str, messages: list[dict[str, Any]]) -> int:
        def text(content: Any) -> str:
            return "".join(p.get("text", "") for p in content) if isinstance(content, list) else content or ""

        return tokens.count_messages(model, [ChatMessage(m["role"], text(m.get("content"))) for m in messages])

    fake_openai = FakeOpenAI(count_prompt_tokens=count_prompt, count_text_tokens=tokens.count_text)
    graph = FakeGraph(implicit_grants=True)
    width, height = (int(x) for x in args.photo.split("x"))
    audio, picture = voice_note(args.seconds, "bench voice"), photo(width, height)
    fake_openai.transcripts[hashlib.sha256(audio).hexdigest()] = "Do you have oat milk, and how much is a flat white?"
    with tempfile.TemporaryDirectory(prefix="nexus-bench-media-") as tmp:
        database = Path(tmp) / "media.db"
        async with serving(fake_openai.app) as (openai_base, _), serving(graph.app) as (graph_base, _):
            secrets_of = {"jwt_secret": JWT_SECRET, "app_secret": APP_SECRET, "secrets_key": SECRETS_KEY}
            settings = local_settings(
                database, openai_base, graph_base, **secrets_of, media_allowed_hosts=("127.0.0.1",), workers=4
            )
            app = create_app(settings, tokens=tokens)
            gc_for_serving(app)
            async with serving(app) as (base, _):
                await provision_with_channel(base, JWT_SECRET, PHONE_ID)
                kinds: dict[str, Any] = {
                    "text (baseline)": lambda n: {"type": "text", "text": {"body": "How much is a flat white?"}},
                    f"voice note ({args.seconds:g} s)": lambda n: {
                        "type": "audio",
                        "audio": {"id": f"77{n:012d}", "mime_type": "audio/ogg; codecs=opus", "voice": True},
                    },
                    f"photo ({args.photo}, caption)": lambda n: {
                        "type": "image",
                        "image": {"id": f"88{n:012d}", "mime_type": "image/png", "caption": "Is this oat milk?"},
                    },
                }
                figures: list[Figures] = []
                async with aiohttp.ClientSession() as session:
                    for index, (kind, content) in enumerate(kinds.items()):
                        for n in range(args.turns + 2):  # two warm-up turns per kind, left out
                            graph.media[f"77{n:012d}"] = (audio, "audio/ogg")
                            graph.media[f"88{n:012d}"] = (picture, "image/png")
                        times: list[float] = []
                        since = int(time.time() * 1000)
                        cpu = 0.0
                        for n in range(args.turns + 2):
                            customer = f"1555{index}{n:06d}"
                            if n == 2:
                                since, cpu = int(time.time() * 1000), time.process_time()
                            took = await _turn(
                                session, base, graph, _delivery(f"wamid.{index}.{n}", customer, content(n)), customer
                            )
                            if n >= 2:
                                times.append(took)
                        cpu = time.process_time() - cpu
                        await asyncio.sleep(0.2)  # the last turn's usage row is committed
                        used, cost = _usage(database, since)
                        figures.append(Figures(kind, times, cpu, used, cost, args.turns))
    _print(figures)
    return 0


def _print(figures: list[Figures]) -> None:
    base = figures[0]
    base_p50 = statistics.median(base.seconds) * 1000
    heads = ("p50 ms", "p90 ms", "added p50", "CPU ms", "tokens", "cost USD", "added cost")
    widths = (8, 8, 10, 8, 8, 10, 11)
    print(f"{'turn':<28} " + " ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True)))
    for f in figures:
        p50 = statistics.median(f.seconds) * 1000
        p90 = statistics.quantiles(f.seconds, n=10)[8] * 1000
        tokens, cost = f.tokens / f.turns, f.cost_nanousd / f.turns / 1e9
        added_cost = cost - base.cost_nanousd / base.turns / 1e9
        print(
            f"{f.kind:<28} {p50:>8.2f} {p90:>8.2f} {p50 - base_p50:>+10.2f} {f.cpu / f.turns * 1000:>8.2f}"
            f" {tokens:>8.0f} {cost:>10.6f} {added_cost:>+11.6f}"
        )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=40, help="measured turns per kind (40)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the voice note (8)")
    parser.add_argument("--photo", default="1024x768", help="the photo's size in pixels (1024x768)")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
