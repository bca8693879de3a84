"""People of the web dashboard in tests: added through the real `user add` command, signed in through the real
sign-in form."""

from __future__ import annotations

import asyncio
import io
import re

from aiohttp.test_utils import TestClient

from gateway.cli import main
from gateway.settings import Settings
from tests.support.paths import PROJECT_DATA

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def add_person(
    settings: Settings, email: str, role: str, account_id: str | None = None, password: str = PASSWORD
) -> tuple[int, str]:
    """`python -m gateway user add`, the password on standard input; its exit status and what it printed."""
    argv = ["user", "add", "--email", email, "--role", role, *(["--account", account_id] if account_id else [])]
    env = {"DATABASE_URL": settings.database_url, "DATA_DIR": str(PROJECT_DATA)}
    out = io.StringIO()
    code = await asyncio.to_thread(main, argv, env, out, io.StringIO(password + "\n"))
    return code, out.getvalue()


def form_token(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page has no form token"
    return found.group(1)


async def sign_in(client: TestClient, email: str, password: str = PASSWORD, *, status: int = 303) -> str:
    """Through the sign-in form; the page it lands on (or the refusal's page)."""
    form = await client.get("/dashboard/login")
    assert form.status == 200
    fields = {"csrf": form_token(await form.text()), "email": email, "password": password}
    answer = await client.post("/dashboard/login", data=fields, allow_redirects=False)
    assert answer.status == status, await answer.text()
    if status != 303:
        return await answer.text()
    assert answer.headers["Location"] == "/dashboard/"
    page = await client.get("/dashboard/")
    assert page.status == 200
    return await page.text()
