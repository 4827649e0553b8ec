"""The one write a fix sends (pure): the value each fixed property is set to when several
policies fix it, and the PATCH body that sets them. ARM's property names are case-insensitive: a
change never adds a second spelling of a property the body already has."""

from __future__ import annotations

import copy
from typing import Any, Mapping

from ..model.decision import AuditRow
from ..policy.operators import satisfies, values_equal


def settle_targets(row: AuditRow, to_apply):
    """The fixes that can be made in one write: a property no single value satisfies for every
    policy fixing it is ``failed`` (``conflicting_policies``); one that another policy's value
    satisfies gets that value (the record's ``after`` says which)."""
    if len(to_apply) < 2:
        return to_apply
    desired, conflicts = merge_targets(to_apply)
    kept = []
    for r, rec in to_apply:
        if r.change.property.lower() in conflicts:
            rec.outcome, rec.message = "failed", "policies demand different values for this property"
            row.reason = "conflicting_policies"
            continue
        rec.after = desired[r.change.property.lower()]
        kept.append((r, rec))
    return kept


def merge_targets(to_apply) -> tuple[dict[str, Any], set[str]]:
    """The one value each fixed property is set to, and the properties no value can fix (pure).
    Several policies may fix one property with different values: the first target (in policy
    order) that every one of their ``expect``s accepts is sent (``equals Disabled`` and ``in
    [Disabled, SecuredByPerimeter]`` both take ``Disabled``); when none does, the policies truly
    conflict and the property is left, loudly (``conflicting_policies``). Keyed by the path in
    lower case: ARM's property names are case-insensitive, and policies may spell one differently."""
    targets: dict[str, list] = {}
    rules: dict[str, list] = {}
    for r, _rec in to_apply:
        path = r.change.property.lower()
        if not any(values_equal(t, r.change.after) for t in targets.get(path, ())):
            targets.setdefault(path, []).append(r.change.after)
        rules.setdefault(path, []).append(r.rule)
    desired: dict[str, Any] = {}
    conflicts: set[str] = set()
    for path, values in targets.items():
        fits = [v for v in values if all(satisfies(rule.expect, v) for rule in rules[path])]
        if fits:
            desired[path] = fits[0]
        else:
            conflicts.add(path)
            desired[path] = values[0]
    return desired, conflicts


def _key_in(obj: dict, seg: str) -> str:
    """The key of ``obj`` spelling ``seg`` (exact, else case-insensitive), else ``seg``: a change
    never adds a second spelling of a property the body already has."""
    if seg in obj:
        return seg
    low = seg.lower()
    return next((k for k in obj if isinstance(k, str) and k.lower() == low), seg)


def set_path(body: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    cur = body
    for seg in parts[:-1]:
        key = _key_in(cur, seg)
        nxt = cur.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[key] = nxt
        cur = nxt
    cur[_key_in(cur, parts[-1])] = value


def get_path(body: Any, parts: list[str]) -> Any:
    cur = body
    for seg in parts:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(_key_in(cur, seg))
    return cur


def patch_body(current: Mapping[str, Any], changes: list[tuple[str, Any]]) -> dict:
    """A PATCH body setting ``changes`` (dotted paths). A change below a member of ``properties``
    (``properties.networkAcls.defaultAction``) sends that member whole, as read, with the change
    made: resource providers replace such a member on PATCH rather than merge it (Storage drops the
    ``ipRules``, ``virtualNetworkRules`` and ``bypass`` a bare ``{"defaultAction": "Deny"}`` leaves
    out), and under a true merge patch the whole member is the same request."""
    body: dict = {}
    for path, value in changes:
        parts = path.split(".")
        if len(parts) > 2 and get_path(body, parts[:2]) is None:
            member = get_path(current, parts[:2])
            if isinstance(member, dict):
                set_path(body, ".".join(parts[:2]), copy.deepcopy(member))
        set_path(body, path, value)
    return body


__all__ = ["get_path", "merge_targets", "patch_body", "set_path", "settle_targets"]
