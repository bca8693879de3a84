"""Typed application keys: every shared object of the app lives under one of these, none under a string."""

from __future__ import annotations

from aiohttp import web

from core.clock import Clock
from core.tokens import TokenCounter
from gateway.services import Services
from gateway.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
SERVICES = web.AppKey("services", Services)
TOKENS = web.AppKey("tokens", TokenCounter)
