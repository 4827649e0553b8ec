"""Grant keys: what a role assignment grants, whatever its assignment id. Pure.

``grant_key(scope, principal id, role definition id)`` is
``rolegrant:<scope>|<principal id>|<role definition GUID>`` (scope lower-case, GUIDs canonical):
the same key for every re-grant of a role a principal just lost, so re-grants are counted by it
(``guardrails.policy.roles.Assignment.grant_key``, the escalation table) and reported by it
(``guardrails.report``). ``parse_grant_key`` reads one as an operator types it
(``guardrails escalation status|reset``).
"""

from __future__ import annotations

from guardrails.errors import InvalidArmId
from guardrails.model.arm_id import parse_scope

__all__ = ["GRANT_KEY_PREFIX", "grant_key", "parse_grant_key"]

GRANT_KEY_PREFIX = "rolegrant:"


def _guid(text: str, what: str) -> str:
    """A GUID in its canonical form (lower-case, dashed); captured deliveries drop the dashes."""
    import uuid

    try:
        return str(uuid.UUID(text.strip()))
    except (ValueError, AttributeError):
        raise ValueError(f"{what} is not a GUID: {str(text)[:60]!r}") from None


def grant_key(scope: str, principal_id: str, role_definition_id: str) -> str:
    """What an assignment grants, whatever its assignment id: ``rolegrant:<scope>|<principal
    id>|<role definition GUID>``. A principal re-granted the role it just lost gets a new
    assignment id every time; this key is the same (scope lower-case, GUIDs canonical, the role
    by its GUID whether its definition id names a subscription or not). ``ValueError`` on a
    scope or id that is not one."""
    try:
        bare = scope.strip().rstrip("/")
        canonical = str(parse_scope(bare)).lower() if bare else "/"       # "/": the tenant root
    except (InvalidArmId, AttributeError):
        raise ValueError(f"not an assignment scope: {str(scope)[:120]!r}") from None
    role = _guid(str(role_definition_id).rstrip("/").rsplit("/", 1)[-1], "role definition id")
    return f"{GRANT_KEY_PREFIX}{canonical}|{_guid(principal_id, 'principal id')}|{role}"


def parse_grant_key(text: str) -> str:
    """A key as an operator types it (``guardrails escalation status|reset``) -> ``grant_key``'s
    form, or ``ValueError`` naming what is wrong. The scope may itself contain ``|``."""
    if not isinstance(text, str) or not text.strip().lower().startswith(GRANT_KEY_PREFIX):
        raise ValueError(f"a grant key starts with {GRANT_KEY_PREFIX!r}")
    parts = text.strip()[len(GRANT_KEY_PREFIX):].rsplit("|", 2)
    if len(parts) != 3:
        raise ValueError("a grant key is rolegrant:<scope>|<principal id>|<role definition GUID>")
    return grant_key(*parts)
