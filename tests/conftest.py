"""Fixtures: a real app on a database of its own (tests/support/database.py), talking to fake OpenAI and Graph
servers on random ports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.tokens import TokenCounter
from gateway.app import create_app
from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from sandbox.model import prompt_counter
from tests.support import database
from tests.support.harness import make_settings
from tests.support.paths import PROJECT_DATA

MakeClient = Callable[..., Awaitable[TestClient]]


def pytest_report_header() -> str:
    where = database.POSTGRES_SERVER if database.BACKEND == "postgresql" else "a file per test"
    return f"database backend: {database.BACKEND} ({where}; TEST_DATABASE=sqlite|postgresql)"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: a test of the SQLite backend's own machinery")
    config.addinivalue_line("markers", "postgresql_only: what only PostgreSQL does (processes told at once)")
    config.addinivalue_line(
        "markers", "any_backend: nothing in it depends on the database backend (a browser, the sandbox): run once"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skips = {
        "sqlite_only": pytest.mark.skip(reason="tests SQLite's own machinery (this run: TEST_DATABASE=postgresql)"),
        "any_backend": pytest.mark.skip(reason="independent of the backend: runs in the SQLite run only"),
        "postgresql_only": pytest.mark.skip(reason="PostgreSQL only (this run: SQLite; TEST_DATABASE=postgresql)"),
    }
    others = ("sqlite_only", "any_backend") if database.BACKEND == "postgresql" else ("postgresql_only",)
    for item in items:
        for other in others:
            if item.get_closest_marker(other) is not None:
                item.add_marker(skips[other])


@pytest.fixture(scope="session", autouse=True)
def _test_databases() -> Iterator[None]:
    """The PostgreSQL database this run made for its scratch schemas is dropped at the end."""
    yield
    database.drop_test_databases()


@pytest.fixture(scope="session")
def tokens() -> TokenCounter:
    counter = TokenCounter(PROJECT_DATA / "tokenizers")
    counter.preload()
    return counter


@pytest.fixture
def fake_openai(tokens: TokenCounter) -> FakeOpenAI:
    """Counts tokens with real tiktoken, the way OpenAI reports `usage`."""

    return FakeOpenAI(count_prompt_tokens=prompt_counter(tokens), count_text_tokens=tokens.count_text)


@pytest.fixture
async def openai_url(aiohttp_server: Any, fake_openai: FakeOpenAI) -> str:
    server = await aiohttp_server(fake_openai.app)
    return str(server.make_url("/v1"))


@pytest.fixture
def fake_graph() -> FakeGraph:
    """Tokens named `token-<id>` (the harness's convention) control `<id>`: channel connects verify against it."""
    return FakeGraph(implicit_grants=True)


@pytest.fixture
async def graph_url(aiohttp_server: Any, fake_graph: FakeGraph) -> str:
    server = await aiohttp_server(fake_graph.app)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def settings(tmp_path: Path, openai_url: str, graph_url: str) -> Settings:
    return make_settings(tmp_path, openai_url, graph_api_base_url=graph_url)


@pytest.fixture
async def make_client(aiohttp_client: Any, tokens: TokenCounter) -> MakeClient:
    async def make(settings: Settings, **kwargs: Any) -> TestClient:
        return await aiohttp_client(create_app(settings, tokens=tokens, **kwargs))

    return make


@pytest.fixture
async def client(make_client: MakeClient, settings: Settings) -> TestClient:
    return await make_client(settings)
