"""What the reconciling sweep lists: the catalogue types some policy selects (parents before
children), the list plan (a child type under each listed parent), management group scopes."""

from __future__ import annotations

from typing import Iterable

from .errors import InvalidArmId
from .model.resource import CATALOG, ResourceType


def covered_types(compiled) -> list[ResourceType]:
    """Catalogue types some policy in force (or in shadow) selects, parents before children."""
    shadow = compiled.shadow
    types = [rt for rt in CATALOG.values()
             if compiled.candidates(rt.name) or (shadow is not None and shadow.candidates(rt.name))]
    return sorted(types, key=lambda rt: (rt.name.count("/"), rt.name))


def list_plan(types: list[ResourceType]) -> list[tuple[ResourceType, bool, tuple[ResourceType, ...]]]:
    """``(top-level type, decide it?, covered child types)``: a child type is listed under each
    parent while the parent is listed anyway (a parent no policy covers is listed, not decided)."""
    from .adapters.listing import parent_type

    covered = {rt.key for rt in types}
    plan: dict[str, tuple[ResourceType, bool, list[ResourceType]]] = {}
    for rt in types:
        parent = parent_type(rt)
        top = parent or rt
        entry = plan.setdefault(top.key, (top, top.key in covered, []))
        if parent is not None:
            entry[2].append(rt)
    return [(top, decide, tuple(children)) for top, decide, children in plan.values()]


def _with_children(plan, extra: tuple[ResourceType, ...]):
    """``plan`` with ``extra`` child types listed under their parent (the parent listed, not
    decided, when no policy covers it)."""
    from .adapters.listing import parent_type

    out = [(top, decide, tuple(children)) for top, decide, children in plan]
    for child in extra:
        parent = parent_type(child)
        if parent is None:
            continue
        for i, (top, decide, children) in enumerate(out):
            if top.key == parent.key:
                out[i] = (top, decide, children + (child,))
                break
        else:
            out.append((parent, False, (child,)))
    return out


def subscription_ids(values: Iterable[str]) -> list[str]:
    """Subscription ids as given (``--subscription``, ``GUARDRAILS_SWEEP_SUBSCRIPTIONS``), each a
    GUID, else ``InvalidArmId`` naming it: a mistyped id would otherwise be swept as a subscription
    with nothing in it (the run "clean", the subscription meant never swept). One named twice (in
    any case: ARM ids are case-insensitive) is one subscription, as first spelled: swept once,
    one coverage row, its owner told once."""
    from .model.arm_id import _GUID

    out: dict[str, str] = {}
    for text in values:
        sid = text.strip()
        if not _GUID.fullmatch(sid):
            raise InvalidArmId(f"{sid[:80]!r} is not a subscription id (a GUID)")
        out.setdefault(sid.lower(), sid)
    return list(out.values())


def management_group_scope(mg: str) -> str:
    """``mg-corp`` or its full id -> ``/providers/Microsoft.Management/managementGroups/mg-corp``."""
    from .model.arm_id import parse_scope

    text = mg.strip()
    if not text.startswith("/"):
        text = f"/providers/Microsoft.Management/managementGroups/{text}"
    scope = parse_scope(text)        # InvalidArmId for anything else
    if scope.subscription_id is not None or not str(scope).lower().startswith(
            "/providers/microsoft.management/managementgroups/"):
        raise InvalidArmId(f"{mg[:80]!r} is not a management group")
    return str(scope)
