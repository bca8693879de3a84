"""Conversation memory: newest whole turns within the bot's token budget, persona always first."""

from __future__ import annotations

from dataclasses import replace

from aiohttp.test_utils import TestClient

from core.chat import ChatMessage
from core.clock import SystemClock
from core.memory import build_prompt
from core.models import Contact, ImagePart, StoredMessage
from core.storage.conversations import ConversationStore, NewMessage
from core.storage.db import Transaction
from core.tokens import TokenCounter, encoding_name_for_model
from gateway.keys import STORAGE
from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI
from tests.support import database
from tests.support.harness import auth, expect, provision, relay

PERSONA = ChatMessage(role="system", content="You are a patient bakery assistant.")


def _history(turns: int) -> list[StoredMessage]:
    stored = []
    for n in range(turns):
        for offset, (role, text) in enumerate((("user", f"question {n} about bread"), ("assistant", f"answer {n}"))):
            stored.append(StoredMessage(f"m{n}{offset}", "c", 2 * n + offset + 1, role, text, 0, 0))
    return stored


def test_what_is_kept_between_turns_changes_no_prompt(tokens: TokenCounter) -> None:
    """A conversation's messages as sent are kept from one turn to the next (ConversationStore.derived): each turn's
    prompt is the one made from nothing, a person's reply included, and a photo shown while it is kept and not
    after."""
    photo = ImagePart("data:image/jpeg;base64,AAAA", 512, 512)
    history = _history(12)
    history[4] = replace(history[4], role="agent", content="a person answered here")
    sent: dict[str, object] = {}
    for turn in range(4, 13):
        shown = history[: 2 * turn]
        photos = {shown[2].id: (photo,)} if turn % 3 else None  # kept on some turns, no longer on others
        user = ChatMessage(role="user", content=f"question {turn}")
        for budget in (10_000, 120):
            fresh = build_prompt(
                tokens, "gpt-4o", persona=PERSONA, history=shown, user=user, budget=budget, images=photos
            )
            kept = build_prompt(
                tokens, "gpt-4o", persona=PERSONA, history=shown, user=user, budget=budget, images=photos, sent=sent
            )
            assert kept == fresh, (turn, budget)
            if budget == 10_000:  # the person's reply is sent as the business's (the assistant's)
                assert ChatMessage("assistant", "a person answered here") in kept.messages
    assert all(isinstance(m, ChatMessage) and not m.images for m in sent.values())  # photos are never kept


def test_keeps_the_newest_whole_turns_within_budget(tokens: TokenCounter) -> None:
    user = ChatMessage(role="user", content="and rye?")
    full = build_prompt(tokens, "gpt-4o-mini", persona=PERSONA, history=_history(10), user=user, budget=10_000)
    assert full.history_turns == 10
    budget = full.tokens - 40  # too small for everything
    prompt = build_prompt(tokens, "gpt-4o-mini", persona=PERSONA, history=_history(10), user=user, budget=budget)
    assert prompt.tokens <= budget
    assert prompt.tokens == tokens.count_messages("gpt-4o-mini", prompt.messages)
    assert 0 < prompt.history_turns < 10
    roles = [m.role for m in prompt.messages]
    assert roles[0] == "system" and roles[-1] == "user"
    assert roles[1:-1] == ["user", "assistant"] * prompt.history_turns  # never half a turn
    assert prompt.messages[-2].content == "answer 9"  # the newest turn is the one kept


def test_replies_before_the_first_question_and_a_persons_replies_stay_with_their_turn(tokens: TokenCounter) -> None:
    """A person may write first (the business opened the conversation) and answer later: the model sees their words
    as the assistant's, each with the turn it belongs to, and a budget still cuts between whole turns."""
    said = [
        ("agent", "Hello from the bakery, your order is ready"),
        ("agent", "We close at six"),
        ("user", "thanks, is there rye?"),
        ("assistant", "Yes, rye until noon."),
        ("agent", "I kept one for you."),
        ("user", "great"),
        ("assistant", "See you soon."),
    ]
    history = [StoredMessage(f"m{n}", "c", n + 1, role, text, 0, 0) for n, (role, text) in enumerate(said)]  # type: ignore[arg-type]
    user = ChatMessage(role="user", content="one more thing")
    full = build_prompt(tokens, "gpt-4o-mini", persona=PERSONA, history=history, user=user, budget=10_000)
    assert full.history_turns == 3
    assert [(m.role, m.content) for m in full.messages[1:-1]] == [
        ("assistant" if role == "agent" else role, text) for role, text in said
    ]
    newest_two = build_prompt(
        tokens, "gpt-4o-mini", persona=PERSONA, history=history, user=user, budget=full.tokens - 1
    )
    assert newest_two.history_turns == 2  # the opening replies were the oldest turn
    assert [m.content for m in newest_two.messages[1:-1]] == [text for _, text in said[2:]]


def _counted(tokens: TokenCounter, model: str, history: list[StoredMessage]) -> list[StoredMessage]:
    """`history` as the engine stores it: each message with its count and the tokenizer it was counted with."""
    encoding = encoding_name_for_model(model)
    return [replace(m, tokens=tokens.count_text(model, m.content), encoding=encoding) for m in history]


def test_a_prompt_made_from_stored_counts_counts_what_a_recount_does(tokens: TokenCounter) -> None:
    user = ChatMessage(role="user", content="and rye?")
    named = ChatMessage(role="system", content=PERSONA.content, name="baker")
    for model in ("gpt-4o-mini", "gpt-4"):
        for persona in (PERSONA, named):
            history = _counted(tokens, model, _history(12))
            prompt = build_prompt(tokens, model, persona=persona, history=history, user=user, budget=10_000)
            assert prompt.history_turns == 12
            assert prompt.tokens == tokens.count_messages(model, prompt.messages)


def test_stored_counts_are_trusted_for_their_tokenizer_and_recounted_for_another(tokens: TokenCounter) -> None:
    """A stored count is not encoded again; one made by another model's tokenizer (the bot changed models) or
    before counts were kept is."""
    user = ChatMessage(role="user", content="and rye?")
    swollen = _counted(tokens, "gpt-4o-mini", _history(3))
    swollen = [replace(m, tokens=5_000) for m in swollen]  # what a stored count says is what the prompt counts
    prompt = build_prompt(tokens, "gpt-4o-mini", persona=PERSONA, history=swollen, user=user, budget=4_000)
    assert prompt.history_turns == 0
    for other in ("gpt-4", "gpt-3.5-turbo"):  # cl100k_base: the o200k_base counts are counted again
        prompt = build_prompt(tokens, other, persona=PERSONA, history=swollen, user=user, budget=4_000)
        assert prompt.history_turns == 3
        assert prompt.tokens == tokens.count_messages(other, prompt.messages)
    unknown = [replace(m, encoding=None) for m in swollen]
    prompt = build_prompt(tokens, "gpt-4o-mini", persona=PERSONA, history=unknown, user=user, budget=4_000)
    assert prompt.history_turns == 3


def test_persona_and_message_survive_a_budget_too_small_for_them(tokens: TokenCounter) -> None:
    user = ChatMessage(role="user", content="hello")
    prompt = build_prompt(tokens, "gpt-4o-mini", persona=PERSONA, history=_history(3), user=user, budget=5)
    assert prompt.messages == (PERSONA, user)
    assert prompt.history_turns == 0


async def test_relay_remembers_the_conversation_within_the_bot_budget(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    tenant = await provision(client, bot={"memory_tokens": 300})
    for n in range(15):
        await expect(await relay(client, tenant, f"Tell me about cake number {n}, please."), 200)
    # OpenAI's own prompt count (real tiktoken in the fake) never exceeds the bot's budget.
    assert all(call.usage["prompt_tokens"] <= 300 for call in fake_openai.calls)
    second = fake_openai.calls[1].messages
    assert second[1:3] == [
        {"role": "user", "content": "Tell me about cake number 0, please."},
        {"role": "assistant", "content": "You said: Tell me about cake number 0, please."},
    ]
    last = fake_openai.calls[-1].messages
    assert last[0]["role"] == "system"
    assert 2 < len(last) < 2 * 15  # truncated, but not emptied
    assert last[-3]["content"] == "Tell me about cake number 13, please."


async def test_a_long_conversations_prompt_is_the_one_its_whole_history_makes(
    client: TestClient, settings: Settings, fake_openai: FakeOpenAI, tokens: TokenCounter
) -> None:
    """Each message's tokens are counted once, when stored, with the tokenizer's name; a turn reads only the newest
    messages that may fit the budget. What the model is sent is what the whole stored history gives."""
    tenant = await provision(client, bot={"memory_tokens": 300})
    fake_openai.reply_with(lambda body: "Noted.")  # short replies to long questions: a cut may fall between them
    for n in range(30):
        await expect(await relay(client, tenant, f"Question {n}: what about the {'rye ' * (n % 4 * 25)}loaf?"), 200)
    await expect(await relay(client, tenant, "ok?"), 200)
    columns = "id, contact_id, seq, role, content, tokens, created_at, note, encoding"
    stored = [StoredMessage(**row) for row in database.rows(settings, f"SELECT {columns} FROM messages ORDER BY seq")]
    assert {m.encoding for m in stored} == {"o200k_base"}
    assert all(m.tokens == tokens.count_text("gpt-4o-mini", m.content) for m in stored)
    sent = fake_openai.calls[-1].messages
    persona = ChatMessage(role="system", content=sent[0]["content"])
    whole = build_prompt(
        tokens,
        "gpt-4o-mini",
        persona=persona,
        history=stored[:-2],  # everything before the last turn
        user=ChatMessage(role="user", content=stored[-2].content),
        budget=300,
    )
    assert 0 < whole.history_turns < 29
    assert [m.to_wire() for m in whole.messages] == sent


async def test_customers_do_not_share_memory(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    await expect(await relay(client, tenant, "my secret is 1234", user_id="alice"), 200)
    await expect(await relay(client, tenant, "hello", user_id="bob"), 200)
    assert [m["role"] for m in fake_openai.calls[1].messages] == ["system", "user"]
    assert all("1234" not in m["content"] for m in fake_openai.calls[1].messages)


async def test_the_same_customer_id_at_two_businesses_is_two_conversations(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    shop = await provision(client, name="Shop")
    bank = await provision(client, name="Bank")
    await expect(await relay(client, shop, "my order number is 777", user_id="+15550001"), 200)
    await expect(await relay(client, bank, "hello", user_id="+15550001"), 200)
    assert [m["role"] for m in fake_openai.calls[1].messages] == ["system", "user"]


async def test_a_turn_sees_what_another_process_stored_since_the_last_one(
    client: TestClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    """A process remembers a conversation's history between turns; a message stored meanwhile by another process
    (here a person's reply, through a store of its own on the same database) is in the next turn's prompt."""
    tenant = await provision(client)
    await expect(await relay(client, tenant, "when does my order ship?", user_id="ann"), 200)
    async with database.open_database(settings) as db:
        other = ConversationStore(db, SystemClock())
        contact = await other.stored(await other.contact(tenant.account_id, tenant.bot_id, "relay", "ann"))
        said = NewMessage("agent", "A person here: it ships on Monday.", 9, "o200k_base", author="sam")

        async def keep(tx: Transaction) -> list[str]:
            return await other.append(tx, contact, [said], request_id=None)

        await db.run(keep)
    await expect(await relay(client, tenant, "and what does it cost?", user_id="ann"), 200)
    assert [m["content"] for m in fake_openai.calls[-1].messages[1:]] == [
        "when does my order ship?",
        "You said: when does my order ship?",
        "A person here: it ships on Monday.",
        "and what does it cost?",
    ]


async def test_an_erased_conversation_is_forgotten_by_the_process_that_remembered_it(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    tenant = await provision(client)
    await expect(await relay(client, tenant, "my card ends in 4242", user_id="bo"), 200)
    await expect(await relay(client, tenant, "thanks", user_id="bo"), 200)
    owner = auth("owner", tenant.account_id)
    listed = await expect(await client.get("/api/conversations", headers=owner), 200)
    [contact] = listed["conversations"]
    remembered = client.app[STORAGE].conversations._histories
    assert any("4242" in m.content for h in remembered.values() for m in h.messages)
    await expect(await client.delete(f"/api/conversations/{contact['id']}", headers=owner), 200)
    assert not any("4242" in m.content for h in remembered.values() for m in h.messages)  # not kept in memory
    await expect(await relay(client, tenant, "hello again", user_id="bo"), 200)
    assert [m["content"] for m in fake_openai.calls[-1].messages[1:]] == ["hello again"]


async def test_a_process_remembering_few_messages_still_sends_whole_histories(
    client: TestClient, settings: Settings
) -> None:
    """Remembered histories are bounded (the conversations used longest ago are forgotten): a forgotten one is read
    again, whole, and a store remembering less gives the same histories as one remembering more."""
    tenant = await provision(client)
    async with database.open_database(settings) as db:
        small = ConversationStore(db, SystemClock(), remembered=1_000)  # bytes: one conversation's history at most
        large = ConversationStore(db, SystemClock())
        account, bot = tenant.account_id, tenant.bot_id
        contacts = [await small.stored(await small.contact(account, bot, "relay", f"customer-{n}")) for n in range(3)]
        for turn in range(4):
            for n, contact in enumerate(contacts):
                said = [
                    NewMessage("user", f"{n}: question {turn}", 5, "o200k_base"),
                    NewMessage("assistant", f"{n}: answer {turn}", 5, "o200k_base"),
                ]

                async def keep(tx: Transaction, contact: Contact = contact, said: list[NewMessage] = said) -> None:
                    await small.append(tx, contact, said, request_id=None)

                await db.run(keep)
                for store in (small, large):
                    recent = await store.recent(contact.id, 200, within=2000, encoding="o200k_base")
                    assert [m.content for m in recent][-2:] == [f"{n}: question {turn}", f"{n}: answer {turn}"]
                    assert [m.seq for m in recent] == list(range(1, 2 * turn + 3))
        assert len(small._histories) == 1  # the newest conversation's history is kept whatever the bound
        within = await small.recent(contacts[0].id, 200, within=20, encoding="o200k_base")
        assert [m.content for m in within] == ["0: question 3", "0: answer 3"]  # 2 x (5 + 3) fit in 20, 4 x do not


async def test_a_conversation_nobody_writes_in_is_forgotten_after_a_while(
    client: TestClient, settings: Settings
) -> None:
    tenant = await provision(client)
    now = [1_000_000]

    class Clock:
        def now_ms(self) -> int:
            return now[0]

    async with database.open_database(settings) as db:
        store = ConversationStore(db, Clock())
        quiet, busy = [
            await store.stored(await store.contact(tenant.account_id, tenant.bot_id, "relay", who))
            for who in ("q", "b")
        ]
        for contact in (quiet, busy):

            async def keep(tx: Transaction, contact: Contact = contact) -> None:
                await store.append(tx, contact, [NewMessage("user", "hi", 1, "o200k_base")], request_id=None)

            await db.run(keep)
            await store.recent(contact.id, 200, within=2000, encoding="o200k_base")
        assert set(store._histories) == {quiet.id, busy.id}
        now[0] += 14 * 60 * 1000
        await store.recent(busy.id, 200, within=2000, encoding="o200k_base")
        now[0] += 2 * 60 * 1000  # the quiet one: 16 minutes without a turn
        await store.recent(busy.id, 200, within=2000, encoding="o200k_base")
        assert set(store._histories) == {busy.id}


async def test_a_turns_own_messages_join_the_remembered_history_only_when_nothing_came_between(
    client: TestClient, settings: Settings
) -> None:
    """What a turn stored joins its process's remembered history after the commit (the next turn reads nothing),
    but only directly after what it remembers: messages another process stored in between are read, in order."""
    tenant = await provision(client)
    async with database.open_database(settings) as db:
        here, there = ConversationStore(db, SystemClock()), ConversationStore(db, SystemClock())
        contact = await here.stored(await here.contact(tenant.account_id, tenant.bot_id, "relay", "cy"))

        async def write(store: ConversationStore, *texts: str) -> list[StoredMessage]:
            said = [NewMessage("user" if n % 2 == 0 else "assistant", t, 3, "o200k_base") for n, t in enumerate(texts)]

            async def keep(tx: Transaction) -> list[StoredMessage]:
                return await store.append_stored(tx, contact, said, request_id=None)

            return await db.run(keep)

        async def history() -> list[str]:
            return [m.content for m in await here.recent(contact.id, 200, within=2000, encoding="o200k_base")]

        here.committed(contact.id, await write(here, "q1", "a1"))
        assert await history() == ["q1", "a1"]
        here.committed(contact.id, await write(here, "q2", "a2"))  # follows what it remembers: taken as it is
        assert await history() == ["q1", "a1", "q2", "a2"]
        await write(there, "q3", "a3")  # another process
        here.committed(contact.id, await write(here, "q4", "a4"))  # a gap before it: not taken
        assert await history() == ["q1", "a1", "q2", "a2", "q3", "a3", "q4", "a4"]
