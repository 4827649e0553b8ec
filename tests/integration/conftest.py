"""Integration tier: Azurite + the local HTTPS Azure emulator + the real SDK clients + real
azure.functions event objects, through the trigger function itself."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

import pytest

from guardrails import bootstrap
from guardrails import settings as S
from guardrails.adapters.audit_tables import TableAuditSink
from guardrails.adapters.policy_tables import TablePolicyRepository
from guardrails.adapters.tables import Tables
from guardrails.local.azurite import Azurite
from guardrails.local.emulator import AzureEmulator
from guardrails.model.decision import AuditRow
from guardrails.service import DeliveryFailed
from guardrails.simulate import to_function_event
from guardrails.sync import metadata_dirs, sync_metadata
from guardrails.triggers.resource_events import resource_events
from tests.builders import GUARDRAIL_OID


@pytest.fixture(scope="session")
def azurite():
    with Azurite() as az:
        yield az


@pytest.fixture(scope="session")
def azurite_blob():
    """Azurite's Blob service: the dead-letter container."""
    with Azurite(service="blob") as az:
        yield az


class Recorder:
    def __init__(self, inner) -> None:
        self.inner, self.rows = inner, []

    def write(self, row: AuditRow) -> None:
        self.inner.write(row)
        self.rows.append(row)

    def rows_of_delivery(self, resource_id: str, delivery_id: str) -> list[AuditRow]:
        return self.inner.rows_of_delivery(resource_id, delivery_id)

    def rows_of_event(self, resource_id: str, event_id: str) -> list[AuditRow]:
        return self.inner.rows_of_event(resource_id, event_id)


class Harness:
    """One guardrail deployment on local emulators, isolated by a table prefix."""

    def __init__(self, azurite: Azurite, resources: Iterable[dict], *, extra_metadata: Iterable[Path] = (),
                 env: dict[str, str] | None = None, lro_seconds: float = 0.0, world: dict | None = None,
                 decision_topic: bool = False) -> None:
        self.emu = AzureEmulator.from_world({**(world or {}), "resources": list(resources),
                                             "lro_seconds": lro_seconds}).start()
        # decision events: an emulated custom topic "decisions", published to with its first key
        self.topic_keys = self.emu.add_topic("decisions") if decision_topic else ()
        topic_env = {S.DECISION_TOPIC_ENDPOINT: self.emu.topic_endpoint("decisions"),
                     S.DECISION_TOPIC_KEY: self.topic_keys[0]} if decision_topic else {}
        self.env = {
            S.TABLES_CONNECTION: azurite.connection_string,
            S.TABLE_PREFIX: "T" + uuid.uuid4().hex[:12],
            S.ARM_ENDPOINT: self.emu.base_url, S.GRAPH_ENDPOINT: self.emu.base_url,
            S.CA_BUNDLE: self.emu.ca_path, S.CREDENTIAL: "local",
            S.KEYVAULT_URL_TEMPLATE: self.emu.vault_url_template, S.KEYVAULT_VERIFY_CHALLENGE: "false",
            S.LOCAL_OBJECT_ID: GUARDRAIL_OID, S.OWN_PRINCIPAL_IDS: GUARDRAIL_OID,
            S.ARM_TIMEOUT_SECONDS: "5", S.TIME_BUDGET_SECONDS: "10",
            **topic_env, **(env or {}),
        }
        self.settings = S.Settings.from_env(self.env)
        self.service = bootstrap.build_service(self.settings)
        self.tables = Tables.from_settings(self.settings)
        self.repo = TablePolicyRepository(self.tables)
        self.extra_metadata = list(extra_metadata)
        sync_metadata(self.repo, metadata_dirs(self.extra_metadata))
        self.recorder = Recorder(self.service.audit)
        self.service.audit = self.recorder
        bootstrap._service = self.service
        self.emu.clear_requests()

    # -- delivery through the real trigger function ---------------------------------------
    def deliver(self, raw: dict) -> AuditRow:
        """Deliver through the trigger; the delivery's audit row (a ``shadow`` row that a shadow
        policy version adds beside it is in ``recorder.rows``)."""
        def decided() -> list[AuditRow]:
            return [r for r in self.recorder.rows if r.verdict != "shadow"]
        before = len(decided())
        try:
            resource_events(to_function_event(raw))
        except DeliveryFailed:
            pass
        assert len(decided()) == before + 1, "every delivery writes exactly one audit row"
        return decided()[-1]

    def deliver_emitted(self) -> list[AuditRow]:
        return [self.deliver(e) for e in self.emu.drain_events()]

    # -- observations -------------------------------------------------------------------------
    def resource(self, rid: str) -> dict:
        r = self.emu.get(rid)
        assert r is not None, rid
        return r

    def arm_requests(self, *methods: str) -> list[dict]:
        return [q for q in self.emu.requests if q["host"] == "management"
                and (not methods or q["method"] in methods)
                and "operationStatuses" not in q["path"]]

    def writes(self) -> list[dict]:
        return self.arm_requests("PUT", "PATCH", "DELETE")

    def stored_rows(self) -> list[AuditRow]:
        sink = TableAuditSink(self.tables, shards=self.settings.audit_shards)
        today = datetime.now(timezone.utc).date()
        return sink.read_day(today - timedelta(days=1)) + sink.read_day(today)

    def close(self) -> None:
        bootstrap.reset_service()
        self.emu.stop()


@pytest.fixture
def harness(azurite):
    made: list[Harness] = []

    def make(resources: Iterable[dict] = (), **kw: Any) -> Harness:
        h = Harness(azurite, resources, **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture
def server():
    """``server(handler)``: a scripted raw-socket HTTP server (``scripted_http.Script``), closed after the test."""
    from .scripted_http import Script

    made = []

    def make(handler):
        s = Script(handler)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()
