"""Azure Machine Learning workspace events (the workspace's system topic), after the envelope:
typed, read-only views.

    Microsoft.MachineLearningServices.ModelRegistered        PascalCase data: ModelName, ModelVersion, ModelTags
    Microsoft.MachineLearningServices.ModelDeployed          ServiceName, ModelIds ("name:version,...": context;
                                                             a label or unversioned entry is kept, not refused;
                                                             any length: the first 32 entries / 8 KiB kept), ServiceTags
    Microsoft.MachineLearningServices.DatasetDriftDetected   DataDriftName, DriftCoefficient, RunId (older
                                                             dataset monitors only: newer workspaces never send it)
    Microsoft.MachineLearningServices.RunCompleted           camelCase data: runId, runTags, runProperties
    Microsoft.MachineLearningServices.RunStatusChanged       ... and runStatus

The workspace is the event's source (Event Grid ``topic`` / CloudEvents ``source``): it must be a
workspace ARM id. ``ModelVersion`` is a number in the samples and a string in the schema: both are
read as a string. ``dataVersion`` may be empty. Optional fields may be absent or null. Every
rejection is an ``InvalidEvent`` with a stable reason (as for resource events):

    missing_data / wrong_type / oversized     data absent, not an object, too large
    missing_field                             a required field is absent (names it)
    invalid_value                             a field has an unusable value (names it), e.g. a number
                                              too large for a float or not finite
    invalid_resource_id                       the source is not a workspace id
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guardrails.errors import InvalidArmId, InvalidEvent
from guardrails.model.arm_id import ArmId, parse_arm_id
from guardrails.model.events import Envelope, _get_ci, data_object

PREFIX = "Microsoft.MachineLearningServices."
MODEL_REGISTERED = PREFIX + "ModelRegistered"
MODEL_DEPLOYED = PREFIX + "ModelDeployed"
DRIFT_DETECTED = PREFIX + "DatasetDriftDetected"
RUN_COMPLETED = PREFIX + "RunCompleted"
RUN_STATUS_CHANGED = PREFIX + "RunStatusChanged"
ML_EVENT_TYPES = frozenset({MODEL_REGISTERED, MODEL_DEPLOYED, DRIFT_DETECTED, RUN_COMPLETED, RUN_STATUS_CHANGED})
WORKSPACE_TYPE = "microsoft.machinelearningservices/workspaces"

# Azure ML asset names: letters, digits, '-', '_', '.'; versions likewise (no ':' '/' '@')
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_MAX_TEXT = 256
_MAX_TAGS = 256
# ModelIds lists every model of a service ("name:version,..."): a legacy ACI/AKS service of several
# models easily passes _MAX_TEXT. It is context, so it has its own cap and is never refused for its
# length; at most _MAX_MODEL_IDS entries are kept (each one the legacy path may read), the rest counted
_MAX_MODEL_IDS_TEXT = 8 * 1024
_MAX_MODEL_IDS = 32


def _text(data: Mapping[str, Any], key: str, *, required: bool = False, pattern: re.Pattern | None = None,
          allow_number: bool = False, max_len: int | None = _MAX_TEXT) -> str | None:
    value = _get_ci(data, key)
    if value is None or value == "":
        if required:
            raise InvalidEvent(f"data.{key} is missing", reason="missing_field")
        return None
    if allow_number and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidEvent(f"data.{key} must be a string, got {type(value).__name__}", reason="wrong_type")
    if (max_len is not None and len(value) > max_len) or any(ord(c) < 32 for c in value):
        raise InvalidEvent(f"data.{key} is not a usable value", reason="invalid_value")
    if pattern is not None and not pattern.match(value):
        raise InvalidEvent(f"data.{key} {value[:40]!r} is not an Azure ML name", reason="invalid_value")
    return value


def _tags(data: Mapping[str, Any], key: str) -> Mapping[str, str]:
    """A tag/property map: null or absent is empty; values kept when strings or numbers (metrics)."""
    value = _get_ci(data, key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidEvent(f"data.{key} must be an object, got {type(value).__name__}", reason="wrong_type")
    if len(value) > _MAX_TAGS:
        raise InvalidEvent(f"data.{key} has more than {_MAX_TAGS} entries", reason="invalid_value")
    return {str(k): v for k, v in value.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)}


@dataclass(frozen=True, repr=False)
class MlEvent:
    envelope: Envelope
    event_id: str
    event_type: str
    workspace_id: ArmId

    @property
    def subject_id(self) -> str:
        """The audit row's resource id: what the event is about."""
        return str(self.workspace_id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.event_id[:80]!r}, subject={self.subject_id[:300]!r})"

    __str__ = __repr__


@dataclass(frozen=True, repr=False)
class ModelRegistered(MlEvent):
    model_name: str
    model_version: str
    tags: Mapping[str, Any]

    @property
    def subject_id(self) -> str:
        return f"{self.workspace_id}/models/{self.model_name}/versions/{self.model_version}"


@dataclass(frozen=True, repr=False)
class ModelDeployed(MlEvent):
    service_name: str
    model_ids: tuple[tuple[str, str | None], ...]  # (name, version / "@label" / None) as the service names them
    tags: Mapping[str, Any]
    model_ids_omitted: int = 0                     # entries past _MAX_MODEL_IDS or the text cap: not kept

    @property
    def subject_id(self) -> str:
        return f"{self.workspace_id}/onlineEndpoints/{self.service_name}"


@dataclass(frozen=True, repr=False)
class DriftDetected(MlEvent):
    monitor_name: str
    monitor_id: str | None
    run_id: str | None
    coefficient: float

    @property
    def subject_id(self) -> str:
        return f"{self.workspace_id}/datadrifts/{self.monitor_name}"


@dataclass(frozen=True, repr=False)
class RunEvent(MlEvent):
    run_id: str
    experiment_name: str | None
    status: str | None                 # RunStatusChanged only (RunCompleted: "Completed")
    tags: Mapping[str, Any]
    properties: Mapping[str, Any]

    @property
    def completed(self) -> bool:
        return (self.status or "").lower() in ("completed", "finished")

    @property
    def subject_id(self) -> str:
        return f"{self.workspace_id}/jobs/{self.run_id}"


def _workspace(env: Envelope) -> ArmId:
    if not env.source:
        raise InvalidEvent("the event has no topic/source: the workspace is unknown", reason="missing_field")
    try:
        ws = parse_arm_id(env.source)
    except InvalidArmId as exc:
        raise InvalidArmId(f"topic/source: {exc}") from None
    if ws.resource_type.lower() != WORKSPACE_TYPE or ws.scope is not None:
        raise InvalidArmId(f"topic/source is a {ws.resource_type}, not an Azure ML workspace")
    return ws


def _model_ids(text: str) -> tuple[tuple[tuple[str, str | None], ...], int]:
    """``ModelIds`` as the service names them: ``name:version`` → ``(name, version)``; a label
    (``name@label``) → ``(name, "@label")``; a bare name (unversioned, what a ``latest`` or
    unpinned deployment announces) or anything else → ``(text, None)`` (at most ``_MAX_TEXT``
    characters of it). Context, never a reason to refuse the event: the endpoint it announces is
    judged on live state, and a reference that resolves to no version is a finding there, not a
    malformed event. The first ``_MAX_MODEL_IDS`` entries within ``_MAX_MODEL_IDS_TEXT``
    characters are kept; returns them and how many others were left out."""
    parts = [p.strip() for p in text.split(",")]
    out: list[tuple[str, str | None]] = []
    omitted, used = 0, 0
    for part in parts:
        if not part:
            continue
        used += len(part)
        if len(out) >= _MAX_MODEL_IDS or used > _MAX_MODEL_IDS_TEXT:
            omitted += 1
            continue
        name, sep, version = part.rpartition(":")
        if sep and _NAME.match(name) and _NAME.match(version):
            out.append((name, version))
        elif "@" in part and _NAME.match(part.split("@", 1)[0]):
            out.append((part.split("@", 1)[0], ("@" + part.split("@", 1)[1])[:_MAX_TEXT]))
        else:
            out.append((part[:_MAX_TEXT], None))
    return tuple(out), omitted


def parse_ml_event(env: Envelope) -> MlEvent:
    """Validate the data of an Azure ML workspace event and wrap it in its typed view."""
    data = data_object(env, ML_EVENT_TYPES, "an Azure ML event")
    ws = _workspace(env)
    head = (env, env.id, env.event_type, ws)
    if env.event_type == MODEL_REGISTERED:
        version = _text(data, "ModelVersion", required=True, pattern=_NAME, allow_number=True)
        return ModelRegistered(*head, _text(data, "ModelName", required=True, pattern=_NAME), version,
                               _tags(data, "ModelTags"))
    if env.event_type == MODEL_DEPLOYED:
        # context: refused only for its type or a control character, never for its length (the
        # whole data is at most MAX_DATA_BYTES); what is past the caps is counted, not kept
        ids = _text(data, "ModelIds", max_len=None)
        model_ids, omitted = _model_ids(ids) if ids else ((), 0)
        return ModelDeployed(*head, _text(data, "ServiceName", required=True, pattern=_NAME),
                             model_ids, _tags(data, "ServiceTags"), omitted)
    if env.event_type == DRIFT_DETECTED:
        coefficient = _get_ci(data, "DriftCoefficient")
        if coefficient is None:
            raise InvalidEvent("data.DriftCoefficient is missing", reason="missing_field")
        if isinstance(coefficient, bool) or not isinstance(coefficient, (str, int, float)):
            raise InvalidEvent("data.DriftCoefficient must be a number", reason="wrong_type")
        try:        # a JSON integer too large for a float (10**400) overflows; a string may not parse
            coefficient = float(coefficient)
        except (OverflowError, ValueError):
            raise InvalidEvent("data.DriftCoefficient is not a usable number", reason="invalid_value") from None
        if not math.isfinite(coefficient) or coefficient < 0:
            raise InvalidEvent("data.DriftCoefficient must be a finite number >= 0", reason="invalid_value")
        return DriftDetected(*head, _text(data, "DataDriftName", required=True), _text(data, "DataDriftId"),
                             _text(data, "RunId"), float(coefficient))
    status = _text(data, "runStatus") if env.event_type == RUN_STATUS_CHANGED else "Completed"
    if env.event_type == RUN_STATUS_CHANGED and status is None:
        raise InvalidEvent("data.runStatus is missing", reason="missing_field")
    return RunEvent(*head, _text(data, "runId", required=True), _text(data, "experimentName"), status,
                    _tags(data, "runTags"), _tags(data, "runProperties"))
