"""`python -m gateway` commands: keys, tokens, migrations, the demo tenant, serving, and rotating secrets."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

import pytest

from admin.tokens import verify_token
from gateway.cli import main
from gateway.settings import Settings
from tests.support import database
from tests.support.harness import JWT_SECRET
from tests.support.paths import PROJECT_DATA


def run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    out = io.StringIO()
    code = main(argv, env, out=out)
    return code, out.getvalue()


def test_keygen_prints_a_fernet_format_key() -> None:
    code, out = run(["keygen"], {})
    assert code == 0
    assert len(base64.urlsafe_b64decode(out.strip())) == 32
    assert run(["keygen"], {})[1] != out  # random each time


def test_token_is_accepted_by_the_verifier() -> None:
    argv = ["token", "--role", "owner", "--sub", "ann", "--account-id", "acc_1"]
    code, out = run(argv, {"ADMIN_JWT_SECRET": JWT_SECRET})
    assert code == 0
    who = verify_token(out.strip(), JWT_SECRET)
    assert (who.subject, who.role, who.account_id) == ("ann", "owner", "acc_1")


def test_token_refuses_without_secret_or_account(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["token", "--role", "admin", "--sub", "ops"], {})[0] == 2
    assert "ADMIN_JWT_SECRET" in capsys.readouterr().err
    assert run(["token", "--role", "viewer", "--sub", "v"], {"ADMIN_JWT_SECRET": JWT_SECRET})[0] == 2
    assert "account id" in capsys.readouterr().err


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    env = {"DATABASE_URL": database.scratch_url(tmp_path, "g.db"), "DATA_DIR": str(PROJECT_DATA)}
    assert "applied 1" in run(["migrate"], env)[1]
    assert "nothing to apply" in run(["migrate"], env)[1]


def test_demo_provisions_a_working_tenant(tmp_path: Path) -> None:
    env = {"DATABASE_URL": database.scratch_url(tmp_path, "g.db"), "DATA_DIR": str(PROJECT_DATA)}
    code, out = run(["demo"], env)
    assert code == 0
    key = next(word for word in out.split() if word.startswith("nxk_"))
    settings = Settings.from_env(env)
    assert {r["name"] for r in database.rows(settings, "SELECT name FROM plans")} == {"starter", "growth", "business"}
    assert len(database.rows(settings, "SELECT id FROM bots")) == 1
    assert key not in "".join(str(tuple(r)) for r in database.rows(settings, "SELECT * FROM api_keys"))
    assert "seed plans created: none" in run(["seed"], env)[1]


def test_demo_run_twice_reuses_the_demo_business_and_issues_a_new_key(tmp_path: Path) -> None:
    env = {"DATABASE_URL": database.scratch_url(tmp_path, "g.db"), "DATA_DIR": str(PROJECT_DATA)}
    first, second = run(["demo"], env), run(["demo"], env)
    assert first[0] == second[0] == 0
    assert "a new demo business" in first[1] and "the existing demo business (reused)" in second[1]
    keys = [next(word for word in out.split() if word.startswith("nxk_")) for _, out in (first, second)]
    assert keys[0] != keys[1]
    settings = Settings.from_env(env)
    assert [r["name"] for r in database.rows(settings, "SELECT name FROM accounts")] == ["Demo business"]
    assert len(database.rows(settings, "SELECT id FROM bots")) == 1
    assert len(database.rows(settings, "SELECT id FROM api_keys WHERE revoked_at IS NULL")) == 2


def test_token_refuses_a_lifetime_the_service_would_refuse(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["token", "--role", "admin", "--sub", "ops", "--ttl", str(31 * 86400)]
    assert run(argv, {"ADMIN_JWT_SECRET": JWT_SECRET})[0] == 2
    assert "ADMIN_JWT_MAX_TTL_SECONDS" in capsys.readouterr().err
    code, out = run(argv, {"ADMIN_JWT_SECRET": JWT_SECRET, "ADMIN_JWT_MAX_TTL_SECONDS": str(40 * 86400)})
    assert code == 0 and verify_token(out.strip(), JWT_SECRET, max_ttl=40 * 86400).role == "admin"


def test_an_unreachable_postgresql_is_reported_clearly_without_its_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["migrate"], {"DATABASE_URL": "postgresql://ops:hunter2-secret@127.0.0.1:1/gateway"})[0] == 2
    err = capsys.readouterr().err
    assert "database unavailable" in err and "127.0.0.1" in err and "hunter2-secret" not in err


def test_python_m_gateway_serves_with_migrations_applied(tmp_path: Path) -> None:
    """The Procfile's command, as a real process: it migrates, serves, and stops cleanly on SIGTERM."""
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "PATH": "/usr/bin:/bin",
        "PORT": str(port),
        "DATABASE_URL": database.scratch_url(tmp_path, "served.db"),
        "DATA_DIR": str(PROJECT_DATA),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    body = response.read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "the server did not come up in 20 s"
                time.sleep(0.1)
        assert '"status": "ready"' in body
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=20)[0].decode()
    assert proc.returncode == 0
    assert '"event": "migrations_applied"' in output  # JSON logs by default


async def test_rotate_secrets_re_encrypts_under_the_new_key(tmp_path: Path) -> None:
    from core.clock import SystemClock
    from core.secrets import SecretBox
    from core.storage.channels import ChannelStore
    from core.storage.notifications import NotificationStore
    from tests.support.harness import SECRETS_KEY

    new_key = base64.urlsafe_b64encode(b"n" * 32).decode()
    env = {"DATABASE_URL": database.scratch_url(tmp_path, "g.db"), "DATA_DIR": str(PROJECT_DATA)}
    assert (await asyncio.to_thread(run, ["demo"], env))[0] == 0
    async with database.open_database(env["DATABASE_URL"]) as db:
        [bot] = database.rows(Settings.from_env(env), "SELECT id, account_id FROM bots")
        old = ChannelStore(db, SystemClock(), SecretBox(SECRETS_KEY))
        channel = await old.connect(
            bot["account_id"], bot["id"], {"platform": "whatsapp", "external_id": "1", "access_token": "tok"}
        )
        signing = NotificationStore(db, SystemClock(), SecretBox(SECRETS_KEY))
        secret = await signing.set_endpoint(bot["account_id"], "https://example.com/hook")

    code, out = await asyncio.to_thread(run, ["rotate-secrets"], {**env, "SECRETS_KEY": f"{new_key},{SECRETS_KEY}"})
    assert code == 0 and "1 channel" in out and "1 account" in out
    async with database.open_database(env["DATABASE_URL"]) as db:
        only_new = ChannelStore(db, SystemClock(), SecretBox(new_key))
        assert (await only_new.secrets(channel.id)).access_token == "tok"
        endpoint = await NotificationStore(db, SystemClock(), SecretBox(new_key)).endpoint(bot["account_id"])
        assert endpoint is not None
        assert NotificationStore(db, SystemClock(), SecretBox(new_key)).open_secret(endpoint) == secret
