"""Request and response models of the check API, defined once: pydantic validates requests with
them and ``guardrails.checks.openapi`` builds the OpenAPI document from them.

Requests are strict: no type coercion (``"true"`` is not a boolean, ``1`` is not a string),
unknown fields rejected, every string bounded and patterned with the same name grammar as the
metadata (``guardrails.checks.policy_schema``); free text (tag values) holds no control or
format characters. Secret references are pointers (vault + secret name); a ``value`` field is an
unknown field, and ``credential_fields`` finds a credential sent where a name belongs (a token
pasted as a secret name or a permission), so the API refuses it without echoing it: a field with a
name grammar by the known credential formats (``classify``), so a long name such as
``Train_ResNet50_ImageNet_Baseline_Experiment_Run1`` is a name; free text (a model's tag values,
``FREE_TEXT``) by ``looks_like_credential``, which also takes an opaque key-like run for a key.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from guardrails.checks import policy_schema as names
from guardrails.model.decision import VERDICTS
from guardrails.secrets.credentials import classify, looks_like_credential

GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$"
# Azure ML asset versions: the asset grammar of ``guardrails.ml_refs`` (``_ASSET``), at most 64
MODEL_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# C0, DEL, C1, line and paragraph separators; ``_printable`` also refuses format characters (Cf)
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp"})
MAX_ITEMS = 64


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    # top-level fields whose values (not their keys) are free text; every other string is a name
    FREE_TEXT: ClassVar[frozenset[str]] = frozenset()


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True)


def _str(pattern: str, description: str = "") -> type[str]:
    return Annotated[str, Field(pattern=pattern, description=description or None)]  # type: ignore[return-value]


class Identity(_Request):
    """The identity a check is about. Honoured only when it is the caller itself, or the caller
    holds a ``check-access`` on-behalf grant."""

    object_id: _str(GUID_PATTERN, "Entra object id (user, service principal or managed identity)")


class SecretReferenceIn(_Request):
    """A Key Vault pointer: vault and secret name. Never a value."""

    vault: _str(names.VAULT_PATTERN, "Key Vault name")
    secret: _str(names.SECRET_PATTERN, "secret name in that vault")


JobId = Union[Annotated[int, Field(ge=0, le=2 ** 53)], _str(names.JOB_ID_PATTERN)]


class JobCheckRequest(_Request):
    """May this job start? Asked by the orchestrator before it runs the job."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"job_id": 201, "network_zone": "pe-databricks-eastus", "permissions": ["execute_inference"],
         "secret_references": [{"vault": "ml-vault", "secret": "databricks-token"}]}]})

    job_id: JobId = Field(description="the job's id in the job policies (e.g. 201)")
    identity: Identity | None = Field(default=None, description="the identity that will run the job;"
                                      " absent = the caller's verified identity")
    network_zone: _str(names.ZONE_PATTERN, "network zone the job runs from (VNet / private endpoint zone)")
    permissions: Annotated[list[_str(names.PERMISSION_PATTERN)], Field(min_length=1, max_length=MAX_ITEMS)] = \
        Field(description="permissions the job will use, e.g. execute_inference")
    secret_references: Annotated[list[SecretReferenceIn], Field(max_length=MAX_ITEMS)] = \
        Field(default_factory=list, description="Key Vault pointers the job will read")
    role: _str(names.ROLE_PATTERN) | None = Field(default=None, description="the role it runs as, if the"
                                                  " caller wants it checked too")


class ResourceCheckRequest(_Request):
    """Would the guardrail accept this resource as it is now? (Read by id; nothing else is fetched.)"""

    model_config = ConfigDict(json_schema_extra={"examples": [{"resource_id": (
        "/subscriptions/3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31/resourceGroups/rg-ml-prod"
        "/providers/Microsoft.Storage/storageAccounts/stmlprod")}]})

    resource_id: Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^/")] = \
        Field(description="an ARM resource id (validated against the ARM id grammar)")


def _printable(value: str) -> str:
    if any(unicodedata.category(c) in _UNPRINTABLE for c in value):
        raise ValueError("must not contain control or format characters")
    return value


ModelVersion = Union[Annotated[int, Field(ge=0, le=2 ** 53)],
                     Annotated[str, Field(pattern=MODEL_VERSION_PATTERN, description="Azure ML asset version")]]
TagKey = Annotated[str, Field(pattern=names.TAG_KEY_PATTERN)]
TagValue = Annotated[str, Field(max_length=1024, pattern=NO_CONTROL_PATTERN,
                                description="free text without control or format characters"),
                     AfterValidator(_printable)]


class ModelPromotionRequest(_Request):
    """May this model version move to ``to_stage``?"""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "fraud-classifier", "version": "7", "from_stage": "validated", "to_stage": "production",
         "tags": {"data_version": "2026-11-01", "git_sha": "3f2a9c1", "metric_summary": "auc=0.93",
                  "owner": "ds_team"}}]})

    FREE_TEXT: ClassVar[frozenset[str]] = frozenset({"tags"})     # tag values (``TagValue``)

    model: _str(MODEL_NAME_PATTERN, "registered model name")
    version: ModelVersion = Field(description="the version promoted; never 'latest' for production")
    from_stage: _str(names.STAGE_PATTERN) | None = Field(default=None, description="its current stage;"
                                                         " absent = in no stage yet")
    to_stage: _str(names.STAGE_PATTERN, "the stage it moves to")
    tags: Annotated[dict[TagKey, TagValue], Field(max_length=MAX_ITEMS)] = \
        Field(default_factory=dict, description="the model version's tags as registered",
              json_schema_extra={"additionalProperties": False})   # keys must match the pattern


class Reason(_Response):
    rule: str = Field(description="the broken condition's stable name, e.g. network-zone")
    message: str


class CheckResponse(_Response):
    """The answer a pipeline acts on (``allowed``) and an auditor reads (``decision_id`` names
    the audit row)."""

    allowed: bool
    reasons: list[Reason]
    policy_version: str | None = Field(description="policy id@version the answer rests on")
    decision_id: str
    verdict: Literal[VERDICTS]  # type: ignore[valid-type]
    subject: str = Field(description="what was checked: job:<id>, a resource id, model:<name>/versions/<v>")


class ErrorDetail(_Response):
    field: str
    code: str
    message: str


class ErrorBody(_Response):
    code: str = Field(description="machine-readable: malformed_json, wrong_type, unknown_field, missing_field,"
                      " invalid_value, body_too_large, unsupported_media_type, invalid_resource_id,"
                      " invalid_principal_header, invalid_query, method_not_allowed, unavailable, internal_error")
    message: str
    correlation_id: str = Field(description="names the audit row and the log lines of this request")
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(_Response):
    error: ErrorBody


class HealthResponse(_Response):
    status: Literal["ok"]


def credential_fields(request: BaseModel) -> list[str]:
    """Where the request holds a credential: a value sent where a name belongs. A string in a
    field with a name grammar (job id, zone, permission, role, vault, secret, model name and
    version, ARM id, a tag's key) counts when it has a known credential format (``classify``:
    GitHub tokens, fine-grained ones too, AWS and Databricks keys, JWTs, connection strings, SAS
    …); a string in free text (the model's ``FREE_TEXT`` fields) also when it holds an opaque
    key-like run (``looks_like_credential``). Field paths as validation errors name them
    (``secret_references.0.secret``), never the value; a mapping key that looks like a credential
    is ``<key not shown>``."""
    free_text = getattr(type(request), "FREE_TEXT", frozenset())
    found: set[str] = set()
    stack: list[tuple[Any, tuple[str, ...]]] = [(request.model_dump(), ())]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, str):
            free = len(loc) > 1 and loc[0] in free_text          # a value inside a free-text field
            if looks_like_credential(value) if free else classify(value) is not None:
                found.add(".".join(loc) or "$")
        elif isinstance(value, Mapping):
            for k, v in value.items():
                key = "<key not shown>" if looks_like_credential(str(k)) else str(k)   # as ``api._field``
                if classify(str(k)) is not None:
                    found.add(".".join((*loc, key)))
                stack.append((v, (*loc, key)))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, (*loc, str(i))) for i, v in enumerate(value))
    return sorted(found)


REQUEST_MODELS = (JobCheckRequest, ResourceCheckRequest, ModelPromotionRequest)
RESPONSE_MODELS = (CheckResponse, ErrorResponse, HealthResponse)
