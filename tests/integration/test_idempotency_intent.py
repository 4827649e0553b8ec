"""The intent an attempt notes with its idempotency claim before a deletion (``note``), on
Azurite: an attempt that takes the event over gets it, and so does the next if that one dies
too; a stale claim cannot note; a finished event keeps none."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from guardrails import settings as S
from guardrails.adapters.idempotency_tables import TableIdempotencyStore
from guardrails.adapters.tables import Tables
from guardrails.errors import IdempotencyError

pytestmark = pytest.mark.integration


@pytest.fixture
def store(azurite):
    settings = S.Settings.from_env({S.TABLES_CONNECTION: azurite.connection_string,
                                    S.TABLE_PREFIX: "T" + uuid.uuid4().hex[:12]})
    tables = Tables.from_settings(settings)
    tables.ensure()
    now = [datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)]
    s = TableIdempotencyStore(tables, completed_ttl=timedelta(hours=24), in_progress_ttl=timedelta(seconds=60),
                              clock=lambda: now[0])
    s.advance = lambda seconds: now.__setitem__(0, now[0] + timedelta(seconds=seconds))
    return s


def test_a_noted_intent_reaches_every_attempt_that_takes_the_event_over(store):
    first = store.acquire("event:e1", holder="w1")
    assert first.intent is None
    noted = store.note("event:e1", first, '[{"rule": "privileged-at-subscription"}]')
    assert noted.token != first.token
    store.advance(61)                                       # w1 died holding it
    second = store.acquire("event:e1", holder="w2")
    assert (second.previous_holder, second.intent) == ("w1", '[{"rule": "privileged-at-subscription"}]')
    store.advance(61)                                       # w2 died too, before noting anything
    third = store.acquire("event:e1", holder="w3")
    assert (third.previous_holder, third.intent) == ("w2", '[{"rule": "privileged-at-subscription"}]')
    store.complete("event:e1", third, verdict="remediated")
    assert store.acquire("event:e1", holder="w4").state == "completed"


def test_a_stale_claim_cannot_note_and_the_noted_claim_is_the_one_that_completes(store):
    first = store.acquire("event:e2", holder="w1")
    noted = store.note("event:e2", first, "[]")
    with pytest.raises(IdempotencyError):
        store.note("event:e2", first, "[]")                 # the token before the note
    with pytest.raises(IdempotencyError):
        store.complete("event:e2", first, verdict="remediated")
    store.complete("event:e2", noted, verdict="remediated")


def test_an_event_released_for_retry_starts_again_without_an_intent(store):
    claim = store.note("event:e3", store.acquire("event:e3", holder="w1"), '[{"rule": "x"}]')
    store.release("event:e3", claim)                         # failed and audited: Event Grid retries
    again = store.acquire("event:e3", holder="w2")
    assert (again.previous_holder, again.intent) == (None, None)
