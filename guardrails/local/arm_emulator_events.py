"""Event Grid events the emulator emits for ARM writes and deletes.

Shaped like captured deliveries (not the docs): PascalCase keys inside ``authorization``,
dashless GUIDs in the evidence, ``httpRequest`` as ``{}``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Literal

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
WRITE_FAILURE = "Microsoft.Resources.ResourceWriteFailure"
DELETE_SUCCESS = "Microsoft.Resources.ResourceDeleteSuccess"
ACTION_SUCCESS = "Microsoft.Resources.ResourceActionSuccess"
CONTRIBUTOR_ROLE_DEFINITION = "b24988ac61804f2093f6b1d1d24d9bc6"
OWNER_ROLE_DEFINITION = "8e3af657a8ff443ca75c2fe8c4bcb635"
_UPN_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
_OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
_TID_CLAIM = "http://schemas.microsoft.com/identity/claims/tenantid"


def event_time(now: datetime | None = None) -> str:
    """UTC ISO-8601 with a 7-digit fraction and ``Z``, as Event Grid writes it."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def resource_event(
    kind: Literal["write", "delete", "action", "write_failure"],
    *,
    resource_id: str,
    type_name: str,
    subscription_id: str,
    claims: dict[str, Any] | None,
    correlation_id: str | None,
    tenant_id: str,
    evidence_role: tuple[str, str] = ("Contributor", CONTRIBUTOR_ROLE_DEFINITION),
    action: str | None = None,
) -> dict[str, Any]:
    """``kind="write_failure"``: a long-running write that ended ``Failed`` (ARM delivers
    ``ResourceWriteFailure`` with the write's correlation id). ``evidence_role`` = (name, dashless
    GUID) of the caller's (fictional) role that allowed the
    write: Contributor for resources, Owner for ``Microsoft.Authorization`` writes. ``kind="action"``
    (a POST action such as ``regenerateKey``) needs ``action``: operation ``{type}/{action}/action``."""
    claims = claims or {}
    role_name, role_def = evidence_role
    namespace = type_name.split("/", 1)[0]
    if kind == "action" and not action:
        raise ValueError("an action event needs the action name")
    operation = (f"{type_name}/{action}/action" if kind == "action"
                 else f"{type_name}/write" if kind == "write_failure" else f"{type_name}/{kind}")
    oid = claims.get("oid") or ""
    tid = claims.get("tid") or tenant_id
    sub_scope = f"/subscriptions/{subscription_id}"
    # the same caller keeps the same (fictional) role assignment
    assignment = uuid.uuid5(uuid.NAMESPACE_URL, f"{sub_scope}|{oid}|{role_name}").hex
    token_claims: dict[str, Any] = {
        "aud": "https://management.core.windows.net/",
        "iss": f"https://sts.windows.net/{tid}/",
    }
    if claims.get("appid"):
        token_claims["appid"] = claims["appid"]
    token_claims[_OID_CLAIM] = oid
    token_claims[_TID_CLAIM] = tid
    if claims.get("upn"):
        token_claims[_UPN_CLAIM] = claims["upn"]
    if claims.get("name"):
        token_claims["name"] = claims["name"]
    token_claims["ver"] = "1.0"
    return {
        "id": str(uuid.uuid4()),
        "topic": sub_scope,
        "subject": resource_id,
        "eventType": {"write": WRITE_SUCCESS, "delete": DELETE_SUCCESS, "action": ACTION_SUCCESS,
                      "write_failure": WRITE_FAILURE}[kind],
        "eventTime": event_time(),
        "dataVersion": "2",
        "metadataVersion": "1",
        "data": {
            "authorization": {
                "Scope": resource_id,
                "Action": operation,
                "Evidence": {
                    "Role": role_name,
                    "RoleAssignmentScope": sub_scope,
                    "RoleAssignmentId": assignment,
                    "RoleDefinitionId": role_def,
                    "PrincipalId": oid.replace("-", ""),
                    "PrincipalType": "User" if claims.get("upn") else "ServicePrincipal",
                },
            },
            "claims": token_claims,
            "correlationId": correlation_id or str(uuid.uuid4()),
            "httpRequest": {},
            "resourceProvider": namespace,
            "resourceUri": resource_id,
            "operationName": operation,
            "status": "Failed" if kind == "write_failure" else "Succeeded",
            "subscriptionId": subscription_id,
            "tenantId": tenant_id,
        },
    }
