"""Answers of the service endpoints."""

from __future__ import annotations

from typing import Literal

from api.shapes import ApiModel


class Liveness(ApiModel):
    status: Literal["ok"]


class ReadinessChecks(ApiModel):
    database: bool
    migrations: bool
    llm_configured: bool


class Readiness(ApiModel):
    status: Literal["ready", "not_ready"]
    checks: ReadinessChecks
