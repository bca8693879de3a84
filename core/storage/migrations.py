"""Versioned schema migrations, applied on start and by `python -m gateway migrate`.

The pending migrations run in one transaction together with the rows that record them, so a crash leaves the
schema at the old version or the new one, never between. Processes that start together apply each migration once: every
migration transaction first takes the database's migration lock (PostgreSQL: an advisory lock; SQLite: the write
lock BEGIN IMMEDIATE takes) and only then looks whether it is applied. Column types are chosen to mean the same
on SQLite and PostgreSQL: TEXT ids, BIGINT epoch milliseconds, INTEGER 0/1 flags, BIGINT nano-dollars for money.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from core.errors import Conflict, StorageUnavailable
from core.storage.db import Database, Transaction


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    postgresql: tuple[str, ...] = ()  # run after `statements` on PostgreSQL only
    sqlite: tuple[str, ...] = ()  # run after `statements` on SQLite only

    def for_dialect(self, dialect: str) -> tuple[str, ...]:
        return self.statements + (self.postgresql if dialect == "postgresql" else self.sqlite)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "plans, accounts, quota, credits, api keys, bots, contacts, messages, usage",
        (
            """CREATE TABLE plans (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                monthly_token_limit BIGINT NOT NULL,
                models TEXT NOT NULL,
                default_model TEXT NOT NULL,
                overage_percent INTEGER NOT NULL DEFAULT 0,
                messages_per_minute INTEGER,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL)""",
            """CREATE TABLE accounts (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                email TEXT,
                plan_id TEXT NOT NULL REFERENCES plans(id),
                locked INTEGER NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL)""",
            # One row per account so a reservation is a single conditional UPDATE on a single row.
            """CREATE TABLE quota_state (
                account_id TEXT PRIMARY KEY REFERENCES accounts(id),
                period_start BIGINT NOT NULL,
                used_tokens BIGINT NOT NULL DEFAULT 0,
                reserved_tokens BIGINT NOT NULL DEFAULT 0,
                credits_drawn BIGINT NOT NULL DEFAULT 0,
                credit_balance BIGINT NOT NULL DEFAULT 0,
                overage_tokens BIGINT NOT NULL DEFAULT 0,
                updated_at BIGINT NOT NULL)""",
            """CREATE TABLE quota_reservations (
                id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL REFERENCES accounts(id),
                tokens BIGINT NOT NULL,
                request_id TEXT,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL)""",
            "CREATE INDEX quota_reservations_expiry ON quota_reservations(expires_at)",
            """CREATE TABLE credit_ledger (
                id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL REFERENCES accounts(id),
                seq BIGINT NOT NULL,
                kind TEXT NOT NULL,
                tokens BIGINT NOT NULL,
                note TEXT,
                created_by TEXT,
                created_at BIGINT NOT NULL)""",
            "CREATE UNIQUE INDEX credit_ledger_account ON credit_ledger(account_id, seq)",
            """CREATE TABLE api_keys (
                id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL REFERENCES accounts(id),
                key_hash TEXT NOT NULL UNIQUE,
                prefix TEXT NOT NULL,
                name TEXT,
                created_at BIGINT NOT NULL,
                last_used_at BIGINT,
                revoked_at BIGINT)""",
            "CREATE INDEX api_keys_account ON api_keys(account_id)",
            """CREATE TABLE bots (
                id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL REFERENCES accounts(id),
                seq BIGINT NOT NULL,
                name TEXT NOT NULL,
                persona TEXT NOT NULL,
                model TEXT,
                temperature DOUBLE PRECISION,
                max_reply_tokens INTEGER NOT NULL,
                memory_tokens INTEGER NOT NULL,
                fallback_message TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                deleted_at BIGINT)""",
            "CREATE UNIQUE INDEX bots_account ON bots(account_id, seq)",
            # A contact is an end customer of one bot; the external id alone is never a key because the
            # same person (a WhatsApp number, say) can talk to several businesses.
            """CREATE TABLE contacts (
                id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL REFERENCES accounts(id),
                bot_id TEXT NOT NULL REFERENCES bots(id),
                platform TEXT NOT NULL,
                external_id TEXT NOT NULL,
                message_count BIGINT NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                last_message_at BIGINT,
                UNIQUE (account_id, bot_id, platform, external_id))""",
            """CREATE TABLE messages (
                id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL REFERENCES accounts(id),
                bot_id TEXT NOT NULL REFERENCES bots(id),
                contact_id TEXT NOT NULL REFERENCES contacts(id),
                seq BIGINT NOT NULL,
                role TEXT NOT NULL,
                content TEXT NOT NULL,
                tokens INTEGER NOT NULL,
                request_id TEXT,
                created_at BIGINT NOT NULL,
                UNIQUE (contact_id, seq))""",
            """CREATE TABLE usage_records (
                id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL REFERENCES accounts(id),
                bot_id TEXT,
                contact_id TEXT,
                channel TEXT NOT NULL,
                model TEXT NOT NULL,
                response_model TEXT,
                prompt_tokens BIGINT NOT NULL DEFAULT 0,
                cached_tokens BIGINT NOT NULL DEFAULT 0,
                completion_tokens BIGINT NOT NULL DEFAULT 0,
                reasoning_tokens BIGINT NOT NULL DEFAULT 0,
                total_tokens BIGINT NOT NULL DEFAULT 0,
                cost_nanousd BIGINT,
                price_version TEXT,
                latency_ms INTEGER,
                attempts INTEGER NOT NULL DEFAULT 0,
                request_id TEXT,
                upstream_request_id TEXT,
                outcome TEXT NOT NULL,
                error_code TEXT,
                created_at BIGINT NOT NULL)""",
            "CREATE INDEX usage_account_time ON usage_records(account_id, created_at)",
            "CREATE INDEX usage_time ON usage_records(created_at)",
        ),
        postgresql=(
            # Case-insensitive search folds both sides with casefold(...); SQLite gets Python's str.casefold
            # (core/storage/sqlite_db.py). Here: lower() (Unicode-aware under a UTF-8 locale, É to é), then the
            # folds that are not lower-casing: ß and ẞ to ss, final and long s, the Latin ligatures.
            "CREATE OR REPLACE FUNCTION casefold(text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN"
            " replace(replace(replace(replace(replace(replace(replace(replace(translate(lower($1), 'ςſ', 'σs'),"
            " 'ß', 'ss'), 'ﬀ', 'ff'), 'ﬁ', 'fi'), 'ﬂ', 'fl'), 'ﬃ', 'ffi'), 'ﬄ', 'ffl'), 'ﬅ', 'st'), 'ﬆ', 'st')",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        2,
        "channels, webhook inbox, unrouted deliveries",
        (
            # Secrets are Fernet tokens (core/secrets.py), never plaintext.
            """CREATE TABLE channels (
                id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL REFERENCES accounts(id),
                bot_id TEXT NOT NULL REFERENCES bots(id),
                platform TEXT NOT NULL,
                external_id TEXT NOT NULL,
                access_token_sealed TEXT NOT NULL,
                app_secret_sealed TEXT,
                verify_token_sealed TEXT,
                status TEXT NOT NULL DEFAULT 'active',
                status_reason TEXT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                disconnected_at BIGINT)""",
            # One live channel per Page / Instagram account / phone number; disconnected ones stay for history.
            """CREATE UNIQUE INDEX channels_live_external ON channels(platform, external_id)
                WHERE disconnected_at IS NULL""",
            "CREATE INDEX channels_bot ON channels(bot_id)",
            # The durable inbox: every event of a verified delivery, committed before the 200.
            # UNIQUE (channel_id, event_key) is the dedupe that makes Meta's retries harmless.
            """CREATE TABLE inbox (
                id TEXT PRIMARY KEY,
                channel_id TEXT NOT NULL REFERENCES channels(id),
                event_key TEXT NOT NULL,
                kind TEXT NOT NULL,
                customer_id TEXT,
                platform_ts BIGINT NOT NULL,
                arrival BIGINT NOT NULL,
                event TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at BIGINT NOT NULL,
                lease_owner TEXT,
                lease_expires_at BIGINT,
                last_error TEXT,
                reply_text TEXT,
                reply_parts_sent INTEGER NOT NULL DEFAULT 0,
                received_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                UNIQUE (channel_id, event_key))""",
            # Partial indexes over pending events only: they stay small however much history accumulates, and
            # make the worker's claim (core/storage/inbox_queue.py) a short index walk instead of a sort of the backlog.
            "CREATE INDEX inbox_pending ON inbox(platform_ts, arrival) WHERE state = 'pending'",
            """CREATE INDEX inbox_pending_conversation ON inbox(channel_id, customer_id, platform_ts)
                WHERE state = 'pending'""",
            # Deliveries for pages/numbers we do not serve, and shapes we do not know: kept for inspection.
            """CREATE TABLE webhook_unrouted (
                id TEXT PRIMARY KEY,
                platform TEXT NOT NULL,
                external_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                reason TEXT NOT NULL,
                event TEXT NOT NULL,
                received_at BIGINT NOT NULL)""",
            "CREATE INDEX webhook_unrouted_time ON webhook_unrouted(received_at)",
            # Erasure looks people up by their platform id across these tables. Not in the inbox: an index there
            # would cost every webhook acknowledgement, for the sake of a rare deletion request.
            "CREATE INDEX contacts_external ON contacts(external_id)",
            # Messages we sent, so our own echoes are told apart from a human answering in the Page inbox.
            """CREATE TABLE outbound_messages (
                channel_id TEXT NOT NULL REFERENCES channels(id),
                message_id TEXT NOT NULL,
                inbox_id TEXT,
                sent_at BIGINT NOT NULL,
                PRIMARY KEY (channel_id, message_id))""",
            # Per-conversation state of a channel: human takeover pause, and notices already sent (one polite
            # over-quota or slow-down message, not one per customer message).
            """CREATE TABLE conversation_state (
                channel_id TEXT NOT NULL REFERENCES channels(id),
                customer_id TEXT NOT NULL,
                paused_until BIGINT,
                last_notice TEXT,
                last_notice_at BIGINT,
                last_inbound_at BIGINT,
                PRIMARY KEY (channel_id, customer_id))""",
            # What a bot answers to a photo, voice note or sticker it cannot read; and how long a human reply
            # from the Page inbox pauses the bot in that conversation.
            # Meta data deletion callbacks: the confirmation code Meta shows the user, and what was erased.
            """CREATE TABLE data_deletion_requests (
                confirmation_code TEXT PRIMARY KEY,
                status TEXT NOT NULL,
                records_erased BIGINT NOT NULL DEFAULT 0,
                requested_at BIGINT NOT NULL,
                completed_at BIGINT)""",
            "ALTER TABLE bots ADD COLUMN media_reply TEXT",
            "ALTER TABLE bots ADD COLUMN handover_pause_minutes INTEGER NOT NULL DEFAULT 30",
            "CREATE INDEX conversation_state_customer ON conversation_state(customer_id)",
            "CREATE INDEX outbound_messages_time ON outbound_messages(sent_at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        3,
        "reporting: feedback, audit trail, activity feed, channel delivery marks, reporting indexes",
        (
            # One rating per bot reply (a later rating of the same reply replaces the earlier one).
            """CREATE TABLE feedback (
                id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL REFERENCES accounts(id),
                bot_id TEXT NOT NULL,
                contact_id TEXT NOT NULL,
                message_id TEXT NOT NULL UNIQUE,
                rating TEXT NOT NULL,
                comment TEXT,
                created_by TEXT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL)""",
            "CREATE INDEX feedback_account_time ON feedback(account_id, created_at)",
            # Every admin mutation: who (token subject and role), what (method, route, target), when, outcome.
            # account_id is the account the mutation touched, NULL for platform-wide ones (plans).
            """CREATE TABLE audit_log (
                id TEXT PRIMARY KEY,
                actor TEXT NOT NULL,
                actor_role TEXT NOT NULL,
                account_id TEXT,
                action TEXT NOT NULL,
                method TEXT NOT NULL,
                path TEXT NOT NULL,
                target_type TEXT,
                target_id TEXT,
                status INTEGER NOT NULL,
                request_id TEXT,
                detail TEXT,
                created_at BIGINT NOT NULL)""",
            "CREATE INDEX audit_log_time ON audit_log(created_at, id)",
            "CREATE INDEX audit_log_account_time ON audit_log(account_id, created_at, id)",
            # What happened to an account, for the dashboard feed: conversations started, quota warnings,
            # channel errors, human takeovers, admin actions. Append-only; read newest first by (created_at, id).
            """CREATE TABLE activity (
                id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                bot_id TEXT,
                channel_id TEXT,
                contact_id TEXT,
                summary TEXT NOT NULL,
                detail TEXT,
                dedupe_key TEXT UNIQUE,
                created_at BIGINT NOT NULL)""",
            "CREATE INDEX activity_account_time ON activity(account_id, created_at, id)",
            # The admin's all-accounts views: dead letters in a range, the feed filtered by kind.
            "CREATE INDEX activity_kind_time ON activity(kind, created_at)",
            "ALTER TABLE channels ADD COLUMN last_delivery_at BIGINT",
            "ALTER TABLE channels ADD COLUMN last_error TEXT",
            "ALTER TABLE channels ADD COLUMN last_error_at BIGINT",
            "CREATE INDEX messages_account_time ON messages(account_id, created_at)",
            "CREATE INDEX contacts_account_recent ON contacts(account_id, last_message_at)",
            "CREATE INDEX usage_bot_time ON usage_records(bot_id, created_at)",
            # Dead letters per channel (status API, metrics scrape): partial, so it holds only the rare dead
            # events and costs nothing on the webhook path, which only ever inserts pending ones.
            "CREATE INDEX inbox_dead ON inbox(channel_id, updated_at) WHERE state = 'dead'",
            # The operator's all-accounts dashboard counts messages by time alone; without this, a full scan.
            "CREATE INDEX messages_time ON messages(created_at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        4,
        "per-minute rate limits shared by every process",
        (
            # GCRA state per conversation (core/storage/rate_limits.py): the theoretical arrival time, microseconds.
            "CREATE TABLE rate_limits (key TEXT PRIMARY KEY, tat_us BIGINT NOT NULL)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        5,
        "usage rows keep the provider's figures when they were not charged as reported",
        (
            # NULL: charged as the provider reported. Otherwise its usage as JSON (core/usage_bounds.py), next to the
            # charged figures in the token columns. Text, so a count beyond 64-bit integers is kept as it came.
            "ALTER TABLE usage_records ADD COLUMN reported_usage TEXT",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        6,
        "knowledge bases: documents, their chunks, and a full-text index on each backend",
        (
            "ALTER TABLE bots ADD COLUMN knowledge_mode TEXT NOT NULL DEFAULT 'augment'",
            "ALTER TABLE bots ADD COLUMN no_answer_message TEXT NOT NULL DEFAULT"
            " 'Sorry, I don''t have an answer to that. Please ask in another way, or contact us directly.'",
            "ALTER TABLE bots ADD COLUMN knowledge_tokens INTEGER NOT NULL DEFAULT 1000",
            """CREATE TABLE knowledge_documents (
                id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL REFERENCES accounts(id),
                bot_id TEXT NOT NULL REFERENCES bots(id),
                title TEXT NOT NULL,
                kind TEXT NOT NULL,
                source TEXT,
                status TEXT NOT NULL,
                error TEXT,
                chunks INTEGER NOT NULL DEFAULT 0,
                tokens BIGINT NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL)""",
            "CREATE INDEX knowledge_documents_bot ON knowledge_documents(bot_id, created_at, id)",
            "CREATE INDEX knowledge_documents_account ON knowledge_documents(account_id)",
            # `id` is a random 62-bit integer: SQLite's full-text index addresses rows by an integer that must
            # never change (a rowid may, on VACUUM), and the same id then travels to PostgreSQL in a copy.
            # `terms` is what the chunk is found by (core/knowledge/terms.py), `term_count` its length for BM25;
            # `embedding` its vector from `embedding_model` (EMBEDDINGS_MODEL; base64 of little-endian float32s,
            # text so that both backends and the copy between them treat it alike), NULL until embedded.
            """CREATE TABLE knowledge_chunks (
                id BIGINT PRIMARY KEY,
                document_id TEXT NOT NULL REFERENCES knowledge_documents(id) ON DELETE CASCADE,
                bot_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                text TEXT NOT NULL,
                tokens INTEGER NOT NULL,
                terms TEXT NOT NULL,
                term_count INTEGER NOT NULL,
                embedding TEXT,
                embedding_model TEXT)""",
            "CREATE INDEX knowledge_chunks_document ON knowledge_chunks(document_id, seq)",
            "CREATE INDEX knowledge_chunks_bot ON knowledge_chunks(bot_id)",
            # Per bot: its chunks and their terms in all, for BM25's document count and average length (kept with
            # every change of chunks, in the same commit).
            """CREATE TABLE knowledge_stats (
                bot_id TEXT PRIMARY KEY,
                chunks BIGINT NOT NULL,
                terms BIGINT NOT NULL)""",
        ),
        postgresql=(
            # The terms as a stored vector, each under its bot's key ("k<key>x<term>", the key the first 12 hex
            # digits of the bot id's MD5, as core/storage/knowledge.py computes it), so that the GIN index finds a
            # bot's chunks for a term without reading any other bot's. The `simple` configuration only splits on
            # spaces: the terms are already ours. PostgreSQL's own column: a copy from SQLite leaves it generated.
            "ALTER TABLE knowledge_chunks ADD COLUMN terms_vector tsvector GENERATED ALWAYS AS (to_tsvector('simple',"
            " regexp_replace(terms, '(\\S+)', 'k' || substr(md5(bot_id), 1, 12) || 'x\\1', 'g'))) STORED",
            "CREATE INDEX knowledge_chunks_terms ON knowledge_chunks USING GIN (terms_vector)",
        ),
        sqlite=(
            # A contentless FTS5 index (the text is not stored twice) that core/storage/knowledge.py keeps in step
            # with the chunks. Each term is indexed under its bot's key, as on PostgreSQL, so a search reads only its
            # bot's postings, with its bot's statistics, whatever else the index holds.
            "CREATE VIRTUAL TABLE knowledge_fts USING fts5(terms, content='',"
            " tokenize='unicode61 remove_diacritics 0')",
            # Each indexed term's count of chunks (its bot's document frequency, the terms being scoped).
            "CREATE VIRTUAL TABLE knowledge_fts_vocab USING fts5vocab(knowledge_fts, 'row')",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        7,
        "knowledge chunks record which derivation of index terms they were indexed by",
        (
            # core/knowledge/terms.py's TERMS_VERSION when the chunk's terms were made; the housekeeping leader
            # indexes older chunks again (core/knowledge/refresh.py). Every chunk before this migration: version 1.
            "ALTER TABLE knowledge_chunks ADD COLUMN terms_version INTEGER NOT NULL DEFAULT 1",
            "CREATE INDEX knowledge_chunks_terms_version ON knowledge_chunks(terms_version)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        8,
        "why a conversation is paused; who wrote a message, and what is special about it",
        (
            # human_takeover (a person answered: an echo, or an agent reply), handoff (the bot handed over: until
            # someone resumes it, paused_until = core/storage/conversation_state.py's INDEFINITE), manual (the API).
            "ALTER TABLE conversation_state ADD COLUMN paused_reason TEXT",
            "UPDATE conversation_state SET paused_reason = 'human_takeover' WHERE paused_until IS NOT NULL",
            # role agent: the person who answered (the JWT's sub). note: 'paused' (sent while a person had the
            # conversation: never shown to the model then), 'undeliverable' (arrived past the reply window).
            "ALTER TABLE messages ADD COLUMN author TEXT",
            "ALTER TABLE messages ADD COLUMN note TEXT",
            # /metrics counts them at each scrape, as it does dead ones.
            "CREATE INDEX inbox_undeliverable ON inbox(channel_id, updated_at) WHERE state = 'undeliverable'",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        9,
        "handoff to a person: the bot's settings, and the account's notifications (an outbox) with their endpoint",
        (
            "ALTER TABLE bots ADD COLUMN handoff_enabled INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE bots ADD COLUMN handoff_message TEXT NOT NULL DEFAULT 'I''m passing you to a member of our"
            " team. They will answer you here as soon as they can.'",
            "ALTER TABLE bots ADD COLUMN handoff_on_no_answer INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE bots ADD COLUMN handoff_on_quota INTEGER NOT NULL DEFAULT 0",
            # Where the account is told of handoffs, and the key its notifications are signed with (sealed with
            # SECRETS_KEY, as channel secrets are).
            "ALTER TABLE accounts ADD COLUMN notify_url TEXT",
            "ALTER TABLE accounts ADD COLUMN notify_secret TEXT",
            # Notifications waiting to be delivered, delivered or given up on: written in the commit of what they
            # tell, sent by the housekeeping leader with retries, so a slow endpoint never holds a turn.
            """CREATE TABLE notifications (
                id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL REFERENCES accounts(id),
                event TEXT NOT NULL,
                body TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at BIGINT NOT NULL,
                last_error TEXT,
                created_at BIGINT NOT NULL,
                delivered_at BIGINT)""",
            "CREATE INDEX notifications_due ON notifications(next_attempt_at) WHERE state = 'pending'",
            "CREATE INDEX notifications_account ON notifications(account_id, created_at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        10,
        "an inbox event keeps the transcript of its voice note, stored with the transcription's charge",
        (
            # Written in the commit that charges the transcription: a retry after a crash uses it and never
            # transcribes (or charges) the same voice note twice.
            "ALTER TABLE inbox ADD COLUMN media_text TEXT",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        11,
        "a conversation's last album photo answered, in a slot of its own; reply windows known for earlier messages",
        (
            # The notices (quota, rate, media) share last_notice: the album rule must not reset their windows.
            "ALTER TABLE conversation_state ADD COLUMN album_at BIGINT",
            # Before migration 8 nothing wrote last_inbound_at: a person could not answer a conversation until its
            # customer wrote again. The inbox (10 days, longer than any reply window) says when they last did.
            """INSERT INTO conversation_state (channel_id, customer_id, last_inbound_at)
                SELECT channel_id, customer_id, MAX(platform_ts) FROM inbox
                WHERE kind IN ('message', 'postback') AND customer_id IS NOT NULL
                GROUP BY channel_id, customer_id
                ON CONFLICT (channel_id, customer_id) DO UPDATE SET last_inbound_at = excluded.last_inbound_at
                WHERE conversation_state.last_inbound_at IS NULL
                   OR conversation_state.last_inbound_at < excluded.last_inbound_at""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        12,
        "a bot may keep its customers' photos for later turns (keep_images); the photos kept, with their message",
        (
            "ALTER TABLE bots ADD COLUMN keep_images INTEGER NOT NULL DEFAULT 0",
            # The photo as later turns show it (a JPEG data URL at the size the model sees, metadata stripped) and
            # its size, which its tokens depend on; `seq` is its message's. Only a conversation's newest few are kept
            # (core/memory.py's KEPT_IMAGES_SHOWN). Deleted with its message (an erasure), and with all of its bot's
            # when keep_images is turned off; never listed with the conversation: only a turn's prompt reads it.
            """CREATE TABLE message_images (
                message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
                position INTEGER NOT NULL,
                contact_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                url TEXT NOT NULL,
                width INTEGER NOT NULL,
                height INTEGER NOT NULL,
                PRIMARY KEY (message_id, position))""",
            "CREATE INDEX message_images_contact ON message_images(contact_id, seq)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        13,
        "a person's reply may carry an idempotency key: a repeat of the request answers the message sent, never sends",
        (
            # Claimed before the reply goes out, completed in the commit that stores it, dropped when nothing went
            # out; erased with the conversation; purged with the inbox's finished events.
            # phase: claimed (nothing tried yet) -> sending (the platform was asked) -> sent | partial | unknown.
            """CREATE TABLE agent_reply_keys (
                contact_id TEXT NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
                key TEXT NOT NULL,
                digest TEXT NOT NULL,
                phase TEXT NOT NULL,
                message_id TEXT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (contact_id, key))""",
            "CREATE INDEX agent_reply_keys_created ON agent_reply_keys(created_at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        14,
        "people who sign in to the web dashboard, and their sessions",
        (
            # email_key: the email casefolded, so one person cannot be added twice in another case.
            """CREATE TABLE people (
                id TEXT PRIMARY KEY,
                email TEXT NOT NULL,
                email_key TEXT NOT NULL UNIQUE,
                password_hash TEXT NOT NULL,
                role TEXT NOT NULL,
                account_id TEXT REFERENCES accounts(id),
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL)""",
            # id: the SHA-256 of the cookie's token (the token itself is never stored); csrf: the form token.
            """CREATE TABLE web_sessions (
                id TEXT PRIMARY KEY,
                person_id TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
                csrf TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                revoked_at BIGINT)""",
            "CREATE INDEX web_sessions_person ON web_sessions(person_id)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        15,
        "hourly rollups of usage and messages, for reports over long ranges (core/storage/rollups.py)",
        (
            # One row per account, hour and (bot, platform, model, outcome) of the calls in it; bot_key '' for calls
            # of no bot. The figures are those the reports sum (core/storage/reads/totals.py, usage_series.py).
            """CREATE TABLE usage_hourly (
                account_id TEXT NOT NULL,
                hour BIGINT NOT NULL,
                bot_key TEXT NOT NULL,
                channel TEXT NOT NULL,
                model TEXT NOT NULL,
                outcome TEXT NOT NULL,
                turns BIGINT NOT NULL,
                requests BIGINT NOT NULL,
                refusals BIGINT NOT NULL,
                prompt_tokens BIGINT NOT NULL,
                cached_tokens BIGINT NOT NULL,
                completion_tokens BIGINT NOT NULL,
                reasoning_tokens BIGINT NOT NULL,
                cost_nanousd BIGINT NOT NULL,
                uncosted BIGINT NOT NULL,
                unpriced BIGINT NOT NULL,
                samples BIGINT NOT NULL,
                latency_sum BIGINT NOT NULL,
                PRIMARY KEY (account_id, hour, bot_key, channel, model, outcome))""",
            "CREATE INDEX usage_hourly_hour ON usage_hourly(hour)",
            """CREATE TABLE message_hourly (
                account_id TEXT NOT NULL,
                hour BIGINT NOT NULL,
                inbound BIGINT NOT NULL,
                outbound BIGINT NOT NULL,
                PRIMARY KEY (account_id, hour))""",
            "CREATE INDEX message_hourly_hour ON message_hourly(hour)",
            # Every hour before `through` is rolled up, and no later one (no row yet: nothing is).
            "CREATE TABLE rollups (name TEXT PRIMARY KEY, through BIGINT NOT NULL)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        16,
        "the tokenizer each stored message was counted with, so prompts are built from the stored counts",
        # NULL for messages stored before: they are counted again when a prompt takes them (core/memory.py).
        ("ALTER TABLE messages ADD COLUMN encoding TEXT",),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


async def current_version(db: Database) -> int:
    """Read-only (readiness probes call it): a database with no migrations table is at version 0."""
    try:
        row = await db.fetch_one("SELECT MAX(version) AS v FROM schema_migrations")
    except StorageUnavailable:  # no such table (both backends say so this way), or the database is down
        if not await db.ping():
            raise
        return 0
    return int(row["v"]) if row is not None and row["v"] is not None else 0


async def writable(db: Database) -> bool:
    """Whether the database takes a write now (a full disk, a read-only replica, a lost lock say no): one row
    rewritten unchanged, which still goes through the journal (SQLite's WAL, PostgreSQL's)."""
    try:
        await db.execute(
            "UPDATE schema_migrations SET applied_at = applied_at"
            " WHERE version = (SELECT MAX(version) FROM schema_migrations)"
        )
    except (StorageUnavailable, Conflict):  # SQLite reports some refusals as a constraint failing
        return False
    return True


async def apply_migrations(db: Database) -> list[int]:
    """Apply every pending migration in order, in one transaction; returns the versions applied now."""
    async with db.transaction() as tx:
        # Checked under the migration lock so processes starting together apply each migration once.
        await _lock_and_ensure_table(tx)
        rows = await tx.fetch_all("SELECT version FROM schema_migrations")
        done = {int(row["version"]) for row in rows}
        applied: list[int] = []
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            statements = migration.for_dialect(tx.dialect.name)
            if tx.dialect.scripts:
                await tx.execute(";\n".join(statements))  # one round trip for the whole migration
            else:
                for statement in statements:
                    await tx.execute(statement)
            await tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, int(time.time() * 1000)),
            )
            applied.append(migration.version)
    return applied


async def _lock_and_ensure_table(tx: Transaction) -> None:
    lock = tx.dialect.lock("migrations")
    if lock is not None:
        await tx.execute(lock)
    # After the lock: PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a concurrent one.
    await tx.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at BIGINT NOT NULL)"""
    )
