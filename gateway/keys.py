"""Typed application keys of the frame: the settings, the shared objects and the service groups of a process.

Handlers never read these: each surface's handler objects get their dependencies through their constructors
(gateway/surfaces.py). Tests and benchmarks may reach a group to inspect what the service stored.
"""

from __future__ import annotations

from aiohttp import web

from core.clock import Clock
from core.metrics import Metrics
from core.storage.leadership import Leadership
from core.tokens import TokenCounter
from gateway.services import Storage, Upstreams, Worker
from gateway.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
TOKENS = web.AppKey("tokens", TokenCounter)
METRICS = web.AppKey("metrics", Metrics)
STORAGE = web.AppKey("storage", Storage)
UPSTREAMS = web.AppKey("upstreams", Upstreams)
WORKER = web.AppKey("worker", Worker)
LEADERSHIP = web.AppKey("leadership", Leadership)
