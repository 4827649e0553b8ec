"""Every setting the product reads, in one place.

Names are constants here and listed in ``local.settings.sample.json``. Precedence:
explicit argument > environment > default. Settings hold identifiers and endpoints only;
the Table Storage connection string is the one secret-bearing value and is never logged.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from .errors import ConfigError, InvalidArmId

# ---- environment variable names -------------------------------------------------------
TABLES_CONNECTION = "GUARDRAILS_TABLES_CONNECTION"      # connection string (Azurite or account)
TABLES_ENDPOINT = "GUARDRAILS_TABLES_ENDPOINT"          # https://<acct>.table.core.windows.net (managed identity)
FALLBACK_STORAGE = "AzureWebJobsStorage"                # used when neither of the above is set
TABLE_PREFIX = "GUARDRAILS_TABLE_PREFIX"
ARM_ENDPOINT = "GUARDRAILS_ARM_ENDPOINT"
HTTPS_PROXY = "GUARDRAILS_HTTPS_PROXY"                   # egress proxy for every Azure client (optional)
GRAPH_ENDPOINT = "GUARDRAILS_GRAPH_ENDPOINT"             # Microsoft Graph (group membership)
KEYVAULT_URL_TEMPLATE = "GUARDRAILS_KEYVAULT_URL_TEMPLATE"   # "https://{vault}.vault.azure.net"
KEYVAULT_VERIFY_CHALLENGE = "GUARDRAILS_KEYVAULT_VERIFY_CHALLENGE"  # "true" in Azure; "false" for the emulator
CA_BUNDLE = "GUARDRAILS_CA_BUNDLE"                      # PEM path for TLS verification (emulator only)
CREDENTIAL = "GUARDRAILS_CREDENTIAL"                    # "default" (DefaultAzureCredential) | "local"
LOCAL_OBJECT_ID = "GUARDRAILS_LOCAL_OBJECT_ID"          # identity of the local credential
LOCAL_APP_ID = "GUARDRAILS_LOCAL_APP_ID"
OWN_PRINCIPAL_IDS = "GUARDRAILS_OWN_PRINCIPAL_IDS"      # comma-separated object ids and app ids
POLICY_TTL_SECONDS = "GUARDRAILS_POLICY_TTL_SECONDS"
MAX_POLICY_TTL_SECONDS = 300.0
DEDUP_COMPLETED_HOURS = "GUARDRAILS_DEDUP_COMPLETED_HOURS"
DEDUP_IN_PROGRESS_SECONDS = "GUARDRAILS_DEDUP_IN_PROGRESS_SECONDS"
TIME_BUDGET_SECONDS = "GUARDRAILS_TIME_BUDGET_SECONDS"
ARM_TIMEOUT_SECONDS = "GUARDRAILS_ARM_TIMEOUT_SECONDS"
AUDIT_SHARDS = "GUARDRAILS_AUDIT_SHARDS"
LOG_LEVEL = "GUARDRAILS_LOG_LEVEL"                     # the guardrails' own log lines (default INFO)
# the Azure SDK's loggers (``azure.*``), default WARNING: at INFO azure-core's HttpLoggingPolicy
# writes every request's and answer's headers, ~0.1 ms of CPU per call here, 9 calls a fix, each a
# log record the Functions worker ships to the host and Application Insights bills
AZURE_LOG_LEVEL = "GUARDRAILS_AZURE_LOG_LEVEL"
SNAPSHOT_REUSE_SECONDS = "GUARDRAILS_SNAPSHOT_REUSE_SECONDS"  # 0 disables re-using a read within a burst
CLOCK_SKEW_SECONDS = "GUARDRAILS_CLOCK_SKEW_SECONDS"
# timers (guardrails/triggers/timers.py): schedules are read by the Functions host (%NAME%)
SWEEP_SCHEDULE = "GUARDRAILS_SWEEP_SCHEDULE"                # NCRONTAB, e.g. "0 0 */6 * * *"
EXPIRY_SCHEDULE = "GUARDRAILS_EXPIRY_SCHEDULE"              # NCRONTAB, e.g. "0 */5 * * * *"
SWEEP_SUBSCRIPTIONS = "GUARDRAILS_SWEEP_SUBSCRIPTIONS"      # comma-separated; empty: every visible one
SWEEP_MANAGEMENT_GROUPS = "GUARDRAILS_SWEEP_MANAGEMENT_GROUPS"  # comma-separated ids: role assignments there
SWEEP_CONCURRENCY = "GUARDRAILS_SWEEP_CONCURRENCY"          # lists read at once
SWEEP_MAX_SECONDS = "GUARDRAILS_SWEEP_MAX_SECONDS"          # stop (truncated) before the host timeout
SWEEP_LISTER = "GUARDRAILS_SWEEP_LISTER"                    # arm (default) | graph: Azure Resource Graph
SWEEP_RENOTIFY_HOURS = "GUARDRAILS_SWEEP_RENOTIFY_HOURS"    # an unchanged open finding: told again after (0: every run)
ARM_READS_PER_SECOND = "GUARDRAILS_ARM_READS_PER_SECOND"    # timers' read budget per subscription
ARM_READ_BURST = "GUARDRAILS_ARM_READ_BURST"
EXPIRY_LOOKBACK_MINUTES = "GUARDRAILS_EXPIRY_LOOKBACK_MINUTES"  # first expiry run looks this far back
# this deployment's function app (ARM id of the Microsoft.Web/sites): the sweep checks that every
# subscription's system topic delivers resource writes to its resource_events (guardrails/coverage.py)
FUNCTION_APP_ID = "GUARDRAILS_FUNCTION_APP_ID"
# comma-separated ARM ids of the vaults / ML workspaces infra/ wires to this app (their system topics
# are checked too); infra/ sets them from governedVaultIds / governedMlWorkspaceIds
GOVERNED_VAULT_IDS = "GUARDRAILS_GOVERNED_VAULT_IDS"
GOVERNED_ML_WORKSPACE_IDS = "GUARDRAILS_GOVERNED_ML_WORKSPACE_IDS"
# comma-separated ARM ids of the deployment's own resources (infra/ sets its storage account):
# findings on them are reported, never fixed: a fix could cut the guardrails off from themselves
OWN_RESOURCE_IDS = "GUARDRAILS_OWN_RESOURCE_IDS"
# decision events (guardrails/outbox.py): an Event Grid custom topic; empty endpoint: not published
DECISION_TOPIC_ENDPOINT = "GUARDRAILS_DECISION_TOPIC_ENDPOINT"  # https://<topic>.<region>-1.eventgrid.azure.net/api/events
DECISION_TOPIC_KEY = "GUARDRAILS_DECISION_TOPIC_KEY"   # access key (secret: a Key Vault reference); empty: Entra token
DECISION_TOPIC_TIMEOUT_SECONDS = "GUARDRAILS_DECISION_TOPIC_TIMEOUT_SECONDS"  # per publish, in the delivery's path
DECISION_OUTBOX_SCHEDULE = "GUARDRAILS_DECISION_OUTBOX_SCHEDULE"  # NCRONTAB of the outbox timer, e.g. "0 */5 * * * *"
# a timer decision's event waits this long in the outbox as an intent before the outbox timer
# treats it as its worker's last words (longer than an audit write and a publish can take)
DECISION_INTENT_HOLD_SECONDS = "GUARDRAILS_DECISION_INTENT_HOLD_SECONDS"
# dead-letter replay (guardrails/replay.py): the container Event Grid writes undeliverable events to;
# neither connection nor endpoint set: replay is off
DEAD_LETTER_CONNECTION = "GUARDRAILS_DEAD_LETTER_CONNECTION"  # connection string (Azurite); secret-bearing
DEAD_LETTER_ENDPOINT = "GUARDRAILS_DEAD_LETTER_ENDPOINT"      # https://<acct>.blob.core.windows.net (managed identity)
DEAD_LETTER_CONTAINER = "GUARDRAILS_DEAD_LETTER_CONTAINER"    # default eventgrid-deadletter (infra/modules/app.bicep)
DEAD_LETTER_SCHEDULE = "GUARDRAILS_DEAD_LETTER_SCHEDULE"      # NCRONTAB of the replay timer, e.g. "0 */15 * * * *"
SITE_NAME = "WEBSITE_SITE_NAME"                        # set by App Service: the decision events' source

ALL_SETTINGS = (
    TABLES_CONNECTION, TABLES_ENDPOINT, TABLE_PREFIX, ARM_ENDPOINT, GRAPH_ENDPOINT, KEYVAULT_URL_TEMPLATE,
    KEYVAULT_VERIFY_CHALLENGE, CA_BUNDLE, CREDENTIAL,
    LOCAL_OBJECT_ID, LOCAL_APP_ID, OWN_PRINCIPAL_IDS, POLICY_TTL_SECONDS, DEDUP_COMPLETED_HOURS,
    DEDUP_IN_PROGRESS_SECONDS, TIME_BUDGET_SECONDS, ARM_TIMEOUT_SECONDS, AUDIT_SHARDS, LOG_LEVEL, AZURE_LOG_LEVEL,
    SNAPSHOT_REUSE_SECONDS, CLOCK_SKEW_SECONDS,
    SWEEP_SCHEDULE, EXPIRY_SCHEDULE, SWEEP_SUBSCRIPTIONS, SWEEP_MANAGEMENT_GROUPS, SWEEP_CONCURRENCY,
    SWEEP_MAX_SECONDS, SWEEP_LISTER, SWEEP_RENOTIFY_HOURS, ARM_READS_PER_SECOND, ARM_READ_BURST, EXPIRY_LOOKBACK_MINUTES, FUNCTION_APP_ID,
    GOVERNED_VAULT_IDS, GOVERNED_ML_WORKSPACE_IDS, OWN_RESOURCE_IDS,
    DECISION_TOPIC_ENDPOINT, DECISION_TOPIC_KEY, DECISION_TOPIC_TIMEOUT_SECONDS, DECISION_OUTBOX_SCHEDULE,
    DECISION_INTENT_HOLD_SECONDS, DEAD_LETTER_CONNECTION, DEAD_LETTER_ENDPOINT, DEAD_LETTER_CONTAINER,
    DEAD_LETTER_SCHEDULE,
)

DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
# the identity the local emulator credential presents when nothing else is configured
DEFAULT_LOCAL_OBJECT_ID = "6a1f5c3e-0d7b-4a8e-9c2f-51e0d1a9b7c4"


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0,
           maximum: float | None = None) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"setting {name} must be a number, got {raw[:40]!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"setting {name} must be a finite number, got {raw[:40]!r}")
    if value < minimum:
        raise ConfigError(f"setting {name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"setting {name} must be <= {maximum:g}, got {value:g}")
    return value


def _guid_set(raw: str) -> frozenset[str]:
    out = set()
    for part in raw.split(","):
        p = part.strip().lower().replace("-", "").replace("{", "").replace("}", "")
        if p:
            out.add(p)
    return frozenset(out)


def _list(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def _subscription_ids(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of subscription ids, each a GUID (``sweep_plan.subscription_ids``)."""
    from .sweep_plan import subscription_ids

    try:
        return tuple(subscription_ids(_list(env.get(name, ""))))
    except InvalidArmId as exc:
        raise ConfigError(f"setting {name}: {exc}") from None


def _function_app_id(raw: str | None) -> str | None:
    """An ARM id of a function app (``…/providers/Microsoft.Web/sites/{name}``), as ARM spells it."""
    text = (raw or "").strip().rstrip("/")
    if not text:
        return None
    seg = text.split("/")
    if (len(seg) != 9 or seg[0] or seg[1].lower() != "subscriptions" or seg[3].lower() != "resourcegroups"
            or seg[5].lower() != "providers" or seg[6].lower() != "microsoft.web" or seg[7].lower() != "sites"
            or not all(seg[2:])):
        raise ConfigError(f"setting {FUNCTION_APP_ID} must be a function app's resource id "
                          "(/subscriptions/…/resourceGroups/…/providers/Microsoft.Web/sites/NAME)")
    return text


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(env: Mapping[str, str], name: str, default: str) -> str:
    raw = (env.get(name) or default).strip().upper()
    if raw not in _LEVELS:
        raise ConfigError(f"setting {name} must be one of {', '.join(_LEVELS)}, got {raw[:40]!r}")
    return raw


def _resource_ids(env: Mapping[str, str], name: str, rtype: str | None) -> tuple[str, ...]:
    """A comma-separated list of top-level ARM ids of one type (``/subscriptions/…/resourceGroups/
    …/providers/{rtype}/{name}``); ``rtype`` None: of any type."""
    ns, kind = rtype.split("/") if rtype else (None, None)
    out = []
    for text in _list(env.get(name, "")):
        seg = text.rstrip("/").split("/")
        if (len(seg) != 9 or seg[0] or seg[1].lower() != "subscriptions" or seg[3].lower() != "resourcegroups"
                or seg[5].lower() != "providers" or not all(seg[2:])
                or (ns is not None and (seg[6].lower() != ns.lower() or seg[7].lower() != kind.lower()))):
            raise ConfigError(f"setting {name} must list {rtype or 'top-level'} resource ids, got {text[:120]!r}")
        out.append(text.rstrip("/"))
    return tuple(out)


_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")


_TABLE_ENDPOINT = re.compile(r"^https?://[A-Za-z0-9.-]+(?::\d{1,5})?(?:/[A-Za-z0-9-]{1,63})?/?$")


def _tables_endpoint(raw: str | None) -> str | None:
    """``https://<account>.table.core.windows.net`` (Azurite: ``http://127.0.0.1:10002/<account>``).
    Anything else is refused without being shown: a connection string pasted here (its account
    key) became the clients' request host and came back whole in urllib3's parse error, which the
    check API and the Functions host log."""
    value = (raw or "").strip()
    if not value:
        return None
    if not _TABLE_ENDPOINT.match(value):
        hint = (" it looks like a connection string: set GUARDRAILS_TABLES_CONNECTION instead;"
                if ";" in value or value.lower().startswith(("defaultendpointsprotocol", "accountname",
                                                             "usedevelopmentstorage")) else "")
        raise ConfigError(f"setting {TABLES_ENDPOINT} must be a table service endpoint "
                          f"(https://<account>.table.core.windows.net, no query or credentials);{hint} "
                          f"its value ({len(value)} characters) is not shown")
    return value.rstrip("/")


def _dead_letter_endpoint(raw: str | None) -> str | None:
    value = (raw or "").strip().rstrip("/")
    if not value:
        return None
    if not value.startswith("https://") or "/" in value[len("https://"):]:
        raise ConfigError(f"setting {DEAD_LETTER_ENDPOINT} must be a blob service endpoint "
                          "(https://<account>.blob.core.windows.net), without a path")
    return value


def _container(raw: str | None) -> str:
    value = (raw or "").strip() or "eventgrid-deadletter"
    if not _CONTAINER.match(value):
        raise ConfigError(f"setting {DEAD_LETTER_CONTAINER} must be a blob container name "
                          f"(3-63 lowercase letters, digits and single hyphens), got {value[:70]!r}")
    return value


def _topic_endpoint(raw: str | None) -> str | None:
    value = (raw or "").strip()
    if not value:
        return None
    if not value.startswith("https://"):
        raise ConfigError(f"setting {DECISION_TOPIC_ENDPOINT} must be an https URL (the topic's /api/events endpoint)")
    return value


def _vault_template(raw: str | None) -> str:
    value = (raw or "https://{vault}.vault.azure.net").rstrip("/")
    if "{vault}" not in value or not value.startswith("https://"):
        raise ConfigError(f"setting {KEYVAULT_URL_TEMPLATE} must be an https URL containing {{vault}}")
    return value


@dataclass(frozen=True)
class Settings:
    tables_connection: str | None = field(default=None, repr=False)   # secret-bearing: never repr'd
    tables_endpoint: str | None = None
    table_prefix: str = "Guardrails"
    arm_endpoint: str = DEFAULT_ARM_ENDPOINT
    graph_endpoint: str = "https://graph.microsoft.com"
    keyvault_url_template: str = "https://{vault}.vault.azure.net"
    keyvault_verify_challenge: bool = True
    ca_bundle: str | None = None
    credential: str = "default"
    local_object_id: str = DEFAULT_LOCAL_OBJECT_ID
    local_app_id: str | None = None
    own_principal_ids: frozenset[str] = frozenset()   # normalised: lower-case, no dashes
    policy_ttl_seconds: float = 30.0
    dedup_completed_hours: float = 24.0
    dedup_in_progress_seconds: float = 120.0
    time_budget_seconds: float = 20.0
    arm_timeout_seconds: float = 10.0
    audit_shards: int = 16
    log_level: str = "INFO"
    azure_log_level: str = "WARNING"
    snapshot_reuse_seconds: float = 10.0
    clock_skew_seconds: float = 1.0
    sweep_subscriptions: tuple[str, ...] = ()
    sweep_management_groups: tuple[str, ...] = ()
    sweep_concurrency: int = 4
    sweep_max_seconds: float = 540.0
    sweep_renotify_hours: float = 24.0
    sweep_lister: str = "arm"
    arm_reads_per_second: float = 20.0     # of ARM's 25/s: the rest stays for the event path
    arm_read_burst: float = 100.0          # of ARM's 250
    expiry_lookback_minutes: float = 60.0
    function_app_id: str | None = None
    governed_vaults: tuple[str, ...] = ()
    governed_ml_workspaces: tuple[str, ...] = ()
    own_resource_ids: frozenset[str] = frozenset()     # lower-case: the deployment's own resources
    decision_topic_endpoint: str | None = None
    decision_topic_key: str | None = field(default=None, repr=False)   # secret: never repr'd, never logged
    decision_topic_timeout_seconds: float = 2.0
    decision_intent_hold_seconds: float = 900.0
    site_name: str = "local"
    dead_letter_connection: str | None = field(default=None, repr=False)   # secret-bearing: never repr'd
    dead_letter_endpoint: str | None = None
    dead_letter_container: str = "eventgrid-deadletter"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        conn = env.get(TABLES_CONNECTION) or None
        endpoint = _tables_endpoint(env.get(TABLES_ENDPOINT))
        if not conn and not endpoint:
            conn = env.get(FALLBACK_STORAGE) or None
        credential = (env.get(CREDENTIAL) or "default").strip().lower()
        if credential not in ("default", "local"):
            raise ConfigError(f"setting {CREDENTIAL} must be 'default' or 'local', got {credential[:20]!r}")
        prefix = env.get(TABLE_PREFIX) or "Guardrails"
        if not prefix.isalnum() or not prefix[0].isalpha() or len(prefix) > 40:
            raise ConfigError(f"setting {TABLE_PREFIX} must be alphanumeric, start with a letter, <= 40 chars")
        lister = (env.get(SWEEP_LISTER) or "arm").strip().lower()
        if lister not in ("arm", "graph"):
            raise ConfigError(f"setting {SWEEP_LISTER} must be 'arm' or 'graph', got {lister[:20]!r}")
        shards = int(_float(env, AUDIT_SHARDS, 16, minimum=1))
        budget = _float(env, TIME_BUDGET_SECONDS, 20.0, minimum=1.0)
        if budget >= 30.0:
            raise ConfigError(f"setting {TIME_BUDGET_SECONDS} must stay under Event Grid's 30 s, got {budget}")
        values = dict(
            tables_connection=conn,
            tables_endpoint=endpoint,
            table_prefix=prefix,
            arm_endpoint=(env.get(ARM_ENDPOINT) or DEFAULT_ARM_ENDPOINT).rstrip("/"),
            graph_endpoint=(env.get(GRAPH_ENDPOINT) or "https://graph.microsoft.com").rstrip("/"),
            keyvault_url_template=_vault_template(env.get(KEYVAULT_URL_TEMPLATE)),
            keyvault_verify_challenge=(env.get(KEYVAULT_VERIFY_CHALLENGE) or "true").strip().lower() not in ("false", "0", "no"),
            ca_bundle=env.get(CA_BUNDLE) or None,
            credential=credential,
            local_object_id=env.get(LOCAL_OBJECT_ID) or DEFAULT_LOCAL_OBJECT_ID,
            local_app_id=env.get(LOCAL_APP_ID) or None,
            own_principal_ids=_guid_set(env.get(OWN_PRINCIPAL_IDS, "")),
            # at most 5 minutes: an admin's sync (a policy switched to audit, a fix withdrawn) must
            # reach every warm worker within minutes, not at its next restart
            policy_ttl_seconds=_float(env, POLICY_TTL_SECONDS, 30.0, maximum=MAX_POLICY_TTL_SECONDS),
            dedup_completed_hours=_float(env, DEDUP_COMPLETED_HOURS, 24.0, minimum=24.0),
            dedup_in_progress_seconds=_float(env, DEDUP_IN_PROGRESS_SECONDS, 120.0, minimum=1.0),
            time_budget_seconds=budget,
            arm_timeout_seconds=_float(env, ARM_TIMEOUT_SECONDS, 10.0, minimum=0.1),
            audit_shards=shards,
            log_level=_log_level(env, LOG_LEVEL, "INFO"),
            azure_log_level=_log_level(env, AZURE_LOG_LEVEL, "WARNING"),
            snapshot_reuse_seconds=_float(env, SNAPSHOT_REUSE_SECONDS, 10.0),
            clock_skew_seconds=_float(env, CLOCK_SKEW_SECONDS, 1.0),
            sweep_subscriptions=_subscription_ids(env, SWEEP_SUBSCRIPTIONS),
            sweep_management_groups=_list(env.get(SWEEP_MANAGEMENT_GROUPS, "")),
            sweep_concurrency=int(_float(env, SWEEP_CONCURRENCY, 4, minimum=1)),
            sweep_max_seconds=_float(env, SWEEP_MAX_SECONDS, 540.0, minimum=1.0),
            sweep_renotify_hours=_float(env, SWEEP_RENOTIFY_HOURS, 24.0, minimum=0.0, maximum=8760.0),
            sweep_lister=lister,
            arm_reads_per_second=_float(env, ARM_READS_PER_SECOND, 20.0, minimum=0.1),
            arm_read_burst=_float(env, ARM_READ_BURST, 100.0, minimum=1.0),
            expiry_lookback_minutes=_float(env, EXPIRY_LOOKBACK_MINUTES, 60.0, minimum=1.0),
            function_app_id=_function_app_id(env.get(FUNCTION_APP_ID)),
            governed_vaults=_resource_ids(env, GOVERNED_VAULT_IDS, "Microsoft.KeyVault/vaults"),
            governed_ml_workspaces=_resource_ids(env, GOVERNED_ML_WORKSPACE_IDS,
                                                 "Microsoft.MachineLearningServices/workspaces"),
            own_resource_ids=frozenset(i.lower() for i in _resource_ids(env, OWN_RESOURCE_IDS, None)),
            decision_topic_endpoint=_topic_endpoint(env.get(DECISION_TOPIC_ENDPOINT)),
            decision_topic_key=(env.get(DECISION_TOPIC_KEY) or "").strip() or None,
            decision_topic_timeout_seconds=_float(env, DECISION_TOPIC_TIMEOUT_SECONDS, 2.0, minimum=0.1),
            decision_intent_hold_seconds=_float(env, DECISION_INTENT_HOLD_SECONDS, 900.0, minimum=1.0),
            site_name=(env.get(SITE_NAME) or "").strip() or "local",
            dead_letter_connection=(env.get(DEAD_LETTER_CONNECTION) or "").strip() or None,
            dead_letter_endpoint=_dead_letter_endpoint(env.get(DEAD_LETTER_ENDPOINT)),
            dead_letter_container=_container(env.get(DEAD_LETTER_CONTAINER)),
        )
        values.update(overrides)
        return cls(**values)

    @property
    def dead_letter_replay(self) -> bool:
        """Dead-letter replay is configured (a connection string or a blob endpoint)."""
        return bool(self.dead_letter_connection or self.dead_letter_endpoint)

    def is_own_principal(self, *ids: str | None) -> bool:
        for i in ids:
            if i and i.strip().lower().replace("-", "") in self.own_principal_ids:
                return True
        return False
