"""Wiring: build the service from settings once per process (the Functions worker reuses it
across invocations). Azure SDK modules are imported here lazily, on first use, to keep cold
start short."""

from __future__ import annotations

import threading
from datetime import timedelta

from .settings import Settings

_lock = threading.Lock()
_service = None


def configure_logging(settings: Settings) -> None:
    """The guardrails' own logger at ``GUARDRAILS_LOG_LEVEL``, the Azure SDK's at
    ``GUARDRAILS_AZURE_LOG_LEVEL`` (default WARNING: the Functions worker's root logger takes INFO,
    and azure-core would then log every request's headers)."""
    import logging
    logging.getLogger("guardrails").setLevel(settings.log_level)
    logging.getLogger("azure").setLevel(settings.azure_log_level)


def build_service(settings: Settings):
    from .adapters.arm import ArmGateway, build_credential
    from .adapters.audit_tables import TableAuditSink
    from .adapters.idempotency_tables import TableIdempotencyStore
    from .adapters.remediation_tables import TableBreakerStore, TablePendingFixes
    from .adapters.policy_tables import TablePolicyRepository
    from .adapters.tables import Tables
    from .policy.cache import PolicyCache
    from .service import GuardrailsService

    configure_logging(settings)
    credential = build_credential(settings)
    tables = Tables.from_settings(settings, credential=credential)
    # the worker's own tables: never the policy table, which only `metadata sync` creates (a worker
    # that made it would decide on an empty set: a mistyped prefix ignoring every event)
    tables.ensure()
    arm = ArmGateway(credential, endpoint=settings.arm_endpoint, ca_bundle=settings.ca_bundle,
                     timeout=settings.arm_timeout_seconds)

    def roles(service):
        from .adapters.authorization import AuthorizationGateway, GraphGroupResolver
        from .role_guardrail import RoleAssignmentGuardrail
        authz = AuthorizationGateway(credential, endpoint=settings.arm_endpoint, ca_bundle=settings.ca_bundle,
                                     timeout=settings.arm_timeout_seconds)
        groups = GraphGroupResolver(credential, endpoint=settings.graph_endpoint, ca_bundle=settings.ca_bundle)
        return RoleAssignmentGuardrail(service, authz, groups)

    def secrets(service):
        from .adapters.keyvault import KeyVaultGateway, StorageKeysGateway
        from .secret_guardrail import SecretGuardrail
        store = KeyVaultGateway(credential, url_template=settings.keyvault_url_template,
                                verify_challenge_resource=settings.keyvault_verify_challenge,
                                ca_bundle=settings.ca_bundle, timeout=settings.arm_timeout_seconds)
        keys = StorageKeysGateway(credential, endpoint=settings.arm_endpoint, ca_bundle=settings.ca_bundle,
                                  timeout=settings.arm_timeout_seconds)
        return SecretGuardrail(service, store, keys)

    def ml(service):
        from .ml_guardrail import MlLifecycleGuardrail
        return MlLifecycleGuardrail(service)   # through the service's ArmGateway (generic by-id calls)

    return GuardrailsService(
        settings,
        policies=PolicyCache(TablePolicyRepository(tables), ttl_seconds=settings.policy_ttl_seconds),
        arm=arm,
        idempotency=TableIdempotencyStore(
            tables, completed_ttl=timedelta(hours=settings.dedup_completed_hours),
            in_progress_ttl=timedelta(seconds=settings.dedup_in_progress_seconds)),
        audit=TableAuditSink(tables, shards=settings.audit_shards),
        breakers=TableBreakerStore(tables),
        pending=TablePendingFixes(tables),
        escalations=_escalations(tables),
        publisher=decision_publisher(settings, tables, credential),
        roles=roles,
        secrets=secrets,
        ml=ml,
    )


def decision_publisher(settings: Settings, tables, credential):
    """Decision events to the Event Grid custom topic, when one is configured (else None)."""
    if not settings.decision_topic_endpoint:
        return None
    from .adapters.eventgrid import EventGridTopic
    from .adapters.audit_tables import TableAuditSink
    from .adapters.outbox_tables import TableOutbox
    from .outbox import DecisionPublisher
    topic = EventGridTopic(settings.decision_topic_endpoint, key=settings.decision_topic_key,
                           credential=None if settings.decision_topic_key else credential,
                           ca_bundle=settings.ca_bundle, timeout=settings.decision_topic_timeout_seconds)
    return DecisionPublisher(topic, TableOutbox(tables), source=f"/guardrails/{settings.site_name}",
                             history=TableAuditSink(tables, shards=settings.audit_shards),
                             intent_hold_seconds=settings.decision_intent_hold_seconds)


def _escalations(tables):
    from .adapters.escalations import TableEscalationStore
    return TableEscalationStore(tables)


def get_service():
    """The process-wide service, built from the environment on first use."""
    global _service
    if _service is None:
        with _lock:
            if _service is None:
                _service = build_service(Settings.from_env())
    return _service


_checks = None


def get_checks():
    """The on-demand check use cases over the process-wide service. They share its policy cache,
    audit sink and Graph group resolver (the role guardrail's, so one membership cache)."""
    global _checks
    service = get_service()
    checks = _checks
    if checks is None or checks.service is not service:
        from .checks.service import CheckService
        groups = getattr(service.roles, "groups", None)
        if groups is None:
            from .adapters.arm import build_credential
            from .adapters.authorization import GraphGroupResolver
            groups = GraphGroupResolver(build_credential(service.settings), endpoint=service.settings.graph_endpoint,
                                        ca_bundle=service.settings.ca_bundle)
        import os

        from .checks.principal import platform_auth_enabled
        checks = _checks = CheckService(service, groups=groups, trust_principal_header=platform_auth_enabled(os.environ))
    return checks


def build_sweeper(settings: Settings, *, clock=None, sleep=None, service=None):
    """The timers' ``Sweeper`` (reconciling sweep; ``expiry.ExpiryReEnforcer`` runs on it): its own
    service instance whose ARM and authorization gateways are paced by ARM-sized token buckets per
    subscription (``GUARDRAILS_ARM_READS_PER_SECOND`` / ``_READ_BURST``; writes 10/s, 200), so the
    event path's gateways never wait on a sweep. ``clock``/``sleep`` pace the buckets (tests: a fake
    clock)."""
    import time

    from .adapters.arm import build_credential
    from .adapters.listing import ArmLister
    from .adapters.sweep_tables import TableSweepStore, TableTimerState
    from .adapters.tables import Tables
    from .ratelimit import ARM_WRITE_BURST, ARM_WRITES_PER_SECOND, RateLimiter, ThrottledArm, ThrottledAuthorization
    from .sweep import Sweeper

    clock, sleep = clock or time.monotonic, sleep or time.sleep
    service = service or build_service(settings)
    reads = RateLimiter(settings.arm_reads_per_second, settings.arm_read_burst, clock=clock, sleep=sleep)
    writes = RateLimiter(ARM_WRITES_PER_SECOND, ARM_WRITE_BURST, clock=clock, sleep=sleep)
    # the gateways' callers pass deadlines on the service's clock: a paced call never waits past one
    service.arm = ThrottledArm(service.arm, reads, writes, clock=service._clock)
    if service.roles is not None:
        service.roles.authz = ThrottledAuthorization(service.roles.authz, reads, writes, clock=service._clock)
    credential = build_credential(settings)
    tables = Tables.from_settings(settings, credential=credential)
    lister = ArmLister(credential, endpoint=settings.arm_endpoint, reads=reads, ca_bundle=settings.ca_bundle,
                       timeout=settings.arm_timeout_seconds, clock=clock, sleep=sleep)
    graph = None
    if settings.sweep_lister == "graph":
        from .adapters.graph import ResourceGraphLister
        graph = ResourceGraphLister(credential, endpoint=settings.arm_endpoint, ca_bundle=settings.ca_bundle,
                                    timeout=settings.arm_timeout_seconds, clock=clock, sleep=sleep)
    return Sweeper(service, lister, TableSweepStore(tables), TableTimerState(tables), reads=reads,
                   concurrency=settings.sweep_concurrency, max_seconds=settings.sweep_max_seconds,
                   renotify_hours=settings.sweep_renotify_hours, subscriptions=settings.sweep_subscriptions, management_groups=settings.sweep_management_groups,
                   graph=graph, clock=clock,
                   function_app_id=settings.function_app_id, governed_vaults=settings.governed_vaults,
                   governed_workspaces=settings.governed_ml_workspaces)          # one clock paces the reads and bounds the run


_sweeper = None


def get_sweeper():
    """The process-wide sweeper (timer functions), rebuilt when the settings changed; its service
    shares the event service's locks, snapshot and settled-write caches and policy cache
    (``GuardrailsService.share_coordination``)."""
    global _sweeper
    settings = Settings.from_env()
    events = get_service()          # outside ``_lock``: it takes it to build the service
    with _lock:
        if _sweeper is None or _sweeper.service.settings != settings:
            _sweeper = build_sweeper(settings)
            if events.settings == settings:
                # one worker's sweep, replay and live deliveries take turns per resource
                _sweeper.service.share_coordination(events)
        return _sweeper


def build_replayer(settings: Settings, *, sweeper=None, clock=None):
    """The dead-letter replayer (``guardrails.replay``) on the sweeper's service (its ARM clients
    paced by the timers' budget), or None when no dead-letter storage is configured."""
    from .adapters.deadletters import DeadLetterContainer

    if not settings.dead_letter_replay:
        return None
    from .adapters.arm import build_credential
    from .replay import DeadLetterReplayer

    sweeper = sweeper or build_sweeper(settings, clock=clock)
    container = DeadLetterContainer.from_settings(settings, credential=build_credential(settings))
    return DeadLetterReplayer(sweeper.service, container, sweeper.state, sweeper.store,
                              max_seconds=settings.sweep_max_seconds, clock=sweeper._clock)


_replayer = None


def get_replayer():
    """The process-wide replayer (timer function), rebuilt with the sweeper; None when off (no
    sweeper is built then)."""
    global _replayer
    settings = Settings.from_env()
    if not settings.dead_letter_replay:
        return None
    sweeper = get_sweeper()
    with _lock:
        if _replayer is None or _replayer.service is not sweeper.service:
            _replayer = build_replayer(sweeper.service.settings, sweeper=sweeper)
        return _replayer


def reset_service() -> None:
    """Forget the cached service (after settings changed: tests, ``simulate``)."""
    global _service
    with _lock:
        _service = None
