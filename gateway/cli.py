"""`python -m gateway [serve|migrate|copy-database|token|keygen|seed|rotate-secrets|demo|user add]`: the one entry
point, the Procfile's too."""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TextIO

from admin.tokens import ROLES, mint_token
from core.clock import SystemClock
from core.errors import Conflict, NotFound, StorageUnavailable
from core.models import BotSettings, PlanSettings
from core.passwords import MIN_LENGTH, Passwords
from core.people import People
from core.secrets import SecretBox, SecretsError
from core.storage.accounts import AccountStore
from core.storage.api_keys import ApiKeyStore
from core.storage.backends import connect_database
from core.storage.bots import BotStore
from core.storage.channels import ChannelStore
from core.storage.copy import BATCH_ROWS, copy_database
from core.storage.db import DatabaseURLError
from core.storage.migrations import apply_migrations, current_version
from core.storage.notifications import NotificationStore
from core.storage.people import PeopleStore, Person
from core.storage.plans import PlanStore
from gateway.app import create_app, gc_for_serving
from gateway.logging import configure_logging
from gateway.services import open_database
from gateway.serving import serve, without_credentials
from gateway.settings import ROLES_OF_A_PROCESS, Settings, SettingsError


def main(argv: Sequence[str], env: Mapping[str, str], out: TextIO = sys.stdout, stdin: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    args.stdin = stdin or sys.stdin  # `user add` reads the password there, never from the command line
    try:
        settings = Settings.from_env(env)
        return int(args.run(args, settings, out) or 0)
    except (SettingsError, DatabaseURLError, SecretsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StorageUnavailable as exc:
        print(f"error: database unavailable: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="Nexus Flow gateway")
    parser.set_defaults(run=_serve, role="all")
    sub = parser.add_subparsers(title="commands")
    serve_parser = sub.add_parser("serve", help="apply pending migrations and serve (the default)")
    serve_parser.add_argument(
        "--role",
        choices=ROLES_OF_A_PROCESS,
        default="all",
        help="all: everything (default); web: the HTTP APIs and webhooks, no inbox workers; worker: inbox workers "
        "and housekeeping, serving only /healthz, /readyz and /metrics on PORT",
    )
    serve_parser.set_defaults(run=_serve)
    sub.add_parser("migrate", help="apply pending database migrations and exit").set_defaults(run=_migrate)
    copy = sub.add_parser(
        "copy-database",
        help="copy the SQLite database of DATABASE_URL into an empty PostgreSQL database",
        description=(
            "Copy every row of the SQLite database of DATABASE_URL into the PostgreSQL database --to, in one "
            "transaction: the target is migrated first and must hold no data; the source must be at the latest "
            "schema version (run `migrate` on it first). Stop the gateway before copying: the copy holds the "
            "SQLite file's write lock while it reads, and writes made elsewhere after it would not be copied. "
            "Then point DATABASE_URL at the target and start the gateway. The password may be left out of the URL "
            "and given in PGPASSWORD or ~/.pgpass instead (a command line is visible to other local users)."
        ),
    )
    copy.add_argument("--to", required=True, dest="target", metavar="POSTGRESQL_URL", help="the empty target")
    copy.add_argument(
        "--batch-rows", type=int, default=BATCH_ROWS, help=f"rows read and inserted at once (default {BATCH_ROWS})"
    )
    copy.set_defaults(run=_copy_database)
    token = sub.add_parser("token", help="mint an admin/owner/viewer JWT (needs ADMIN_JWT_SECRET)")
    token.add_argument("--role", choices=ROLES, required=True)
    token.add_argument("--sub", required=True, help="who the token is for, e.g. ops or an email")
    token.add_argument("--account-id", help="required for owner and viewer tokens")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.set_defaults(run=_token)
    sub.add_parser("keygen", help="print a new random key (for SECRETS_KEY or ADMIN_JWT_SECRET)").set_defaults(
        run=_keygen
    )
    sub.add_parser("seed", help="load the seed plans from data/plans.json").set_defaults(run=_seed)
    sub.add_parser(
        "rotate-secrets", help="re-encrypt channel secrets under the first key of SECRETS_KEY (key rotation)"
    ).set_defaults(run=_rotate_secrets)
    sub.add_parser("demo", help="seed plans, create a demo account, bot and API key, print a curl").set_defaults(
        run=_demo
    )
    user = sub.add_parser("user", help="people who sign in to the web dashboard").add_subparsers(title="user commands")
    add = user.add_parser(
        "add",
        help="add a person who can sign in to /dashboard/; the password is read from standard input",
        description="Add a person: an admin sees every account, an owner and a viewer one account (--account); "
        f"viewers only read. The password (at least {MIN_LENGTH} characters) is the first line of standard input.",
    )
    add.add_argument("--email", required=True)
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--account", dest="account_id", help="the account an owner or a viewer belongs to")
    add.set_defaults(run=_user_add)
    return parser


def _user_add(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    if (args.role == "admin") != (args.account_id is None):
        raise SettingsError("an admin has no --account; an owner or a viewer needs one")
    # At a terminal, asked for without echo; otherwise the first line of standard input (a pipe, a file).
    password = getpass.getpass("Password: ") if args.stdin.isatty() else args.stdin.readline().rstrip("\r\n")

    async def run() -> Person:
        db = await open_database(settings)
        try:
            people = People(PeopleStore(db, SystemClock()), Passwords())
            return await people.add(args.email, password, args.role, args.account_id)
        finally:
            await db.close()

    try:
        person = asyncio.run(run())  # InvalidPerson and WeakPassword (ValueErrors) say what is wrong
    except (Conflict, NotFound) as exc:
        raise SettingsError(str(exc) if isinstance(exc, Conflict) else f"no account {args.account_id}") from None
    where = f" of account {person.account_id}" if person.account_id else ""
    print(f"added {person.email}, {person.role}{where} ({person.id}); they can sign in at /dashboard/login", file=out)
    return 0


def _serve(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    settings = replace(settings, role=args.role)
    configure_logging(settings.log_level, settings.log_format)
    if settings.role == "worker" and settings.worker_nice:
        os.nice(settings.worker_nice)  # WORKER_NICE: web processes on the same cores acknowledge first
    app = create_app(settings)
    gc_for_serving(app)
    return serve(app, settings)


def _migrate(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    async def run() -> tuple[list[int], int]:
        db = await connect_database(settings.database_url, pool_size=1)
        try:
            return await apply_migrations(db), await current_version(db)
        finally:
            await db.close()

    applied, version = asyncio.run(run())
    done = f"applied {', '.join(map(str, applied))}" if applied else "nothing to apply"
    print(f"{done}; schema version {version} ({without_credentials(settings.database_url)})", file=out)
    return 0


def _copy_database(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    report = asyncio.run(copy_database(settings.database_url, args.target, batch_rows=args.batch_rows))
    source, target = without_credentials(settings.database_url), without_credentials(args.target)
    print(f"copied {source} to {target} (schema version {report.version}):", file=out)
    for table in report.tables:
        nuls = f" ({table.nuls_replaced} NUL value(s) stored as U+FFFD)" if table.nuls_replaced else ""
        print(f"  {table.name}: {table.rows} row(s){nuls}", file=out)
    nuls = f", {report.nuls_replaced} NUL value(s) stored as U+FFFD" if report.nuls_replaced else ""
    print(f"total: {report.rows} row(s) in {len(report.tables)} tables{nuls}, {report.seconds:.1f} s", file=out)
    return 0


def _token(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    if not settings.admin_jwt_secret:
        raise SettingsError("ADMIN_JWT_SECRET is not set; tokens are signed with it")
    if args.ttl <= 0:
        raise SettingsError("--ttl must be positive")
    if args.ttl > settings.admin_jwt_max_ttl_seconds:
        # The service would refuse such a token: say so now rather than print one that cannot be used.
        raise SettingsError(
            f"--ttl may be at most {settings.admin_jwt_max_ttl_seconds} s (ADMIN_JWT_MAX_TTL_SECONDS); "
            "raise that setting on the service first if a longer-lived token is really needed"
        )
    token = mint_token(
        settings.admin_jwt_secret,
        role=args.role,
        sub=args.sub,
        account_id=args.account_id,
        ttl=args.ttl,
        now=int(time.time()),
    )
    print(token, file=out)
    return 0


def _keygen(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    # The Fernet key format: 32 random bytes, urlsafe base64.
    print(base64.urlsafe_b64encode(os.urandom(32)).decode(), file=out)
    return 0


def _rotate_secrets(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    """Put the new key first in SECRETS_KEY (comma-separated), run this, then drop the old key."""
    box = SecretBox(settings.secrets_key)
    if not box.configured:
        raise SettingsError("SECRETS_KEY is not set")

    async def run() -> tuple[int, int]:
        db = await open_database(settings)
        try:
            channels = await ChannelStore(db, SystemClock(), box).reseal_all()
            accounts = await NotificationStore(db, SystemClock(), box).reseal_all()
            return channels, accounts
        finally:
            await db.close()

    channels, accounts = asyncio.run(run())
    print(
        f"re-encrypted the secrets of {channels} channel(s) and the notification keys of {accounts} account(s)"
        " under the first SECRETS_KEY",
        file=out,
    )
    return 0


def _seed(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    created = asyncio.run(_seed_plans(settings))
    print(f"seed plans created: {', '.join(created) if created else 'none (all present)'}", file=out)
    return 0


async def _seed_plans(settings: Settings) -> list[str]:
    seed = json.loads((settings.data_dir / "plans.json").read_text())
    db = await open_database(settings)
    try:
        store = PlanStore(db, SystemClock())
        existing = {plan.name for plan in await store.list()}
        created = []
        for plan in seed["plans"]:
            if plan["name"] not in existing:
                await store.create(PlanSettings.model_validate(plan))
                created.append(plan["name"])
        return created
    finally:
        await db.close()


DEMO_ACCOUNT = "Demo business"


def _demo(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    """The demo business with a bot, made once (a second run reuses them), and a fresh API key for it."""

    async def run() -> tuple[str, str, str, bool]:
        await _seed_plans(settings)
        db = await open_database(settings)
        try:
            clock = SystemClock()
            accounts, bots = AccountStore(db, clock), BotStore(db, clock)
            existing = next((a for a in await accounts.list() if a.name == DEMO_ACCOUNT), None)
            if existing is not None and (their_bots := await bots.list(existing.id)):
                account, bot = existing, their_bots[0]
            else:
                plans = {plan.name: plan for plan in await PlanStore(db, clock).list()}
                plan = plans.get("starter") or next(iter(plans.values()))
                account = existing or await accounts.create(DEMO_ACCOUNT, plan.id, None)
                persona = "You are the friendly assistant of a small coffee shop. Answer briefly."
                bot = await bots.create(account.id, BotSettings(name="Demo assistant", persona=persona))
            # A key is shown once and stored as a hash: each run issues a new one (earlier ones keep working).
            issued = await ApiKeyStore(db, clock).issue(account.id, "demo")
            return account.id, bot.id, issued.plaintext, existing is not None
        finally:
            await db.close()

    account_id, bot_id, key, reused = asyncio.run(run())
    base = f"http://{settings.host}:{settings.port}"
    made = "the existing demo business (reused)" if reused else "a new demo business"
    print(f"{made}: account {account_id}, bot {bot_id}\nAPI key (shown once): {key}\n", file=out)
    print(
        f"curl -s {base}/api/messages/relay -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
        '-d \'{"user_id": "customer-1", "message": "Hi! Are you open on Sunday?"}\'',
        file=out,
    )
    return 0
