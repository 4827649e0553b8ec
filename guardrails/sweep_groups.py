"""The sweep's management groups (``Sweeper.run``): role assignments at each configured group
(``GUARDRAILS_SWEEP_MANAGEMENT_GROUPS``) and at every group below it, at any depth.

No Event Grid source delivers a management group's role assignments (a system topic's source is
a subscription, a resource group or a resource), so the sweep is their only path; and an Owner
granted at a group below a configured one is inherited by every subscription below that group,
as one at the configured group is. One unit of the ring per configured group (``sweep_ring``):

    list the groups below it (``ManagementGroups_GetDescendants``, paged by ``nextLink``; the
        subscriptions among the descendants are swept as subscriptions)
    ─▶ the group itself, then each group below it: its role assignments listed ``atScope()``
       (at and above it) ─▶ each one AT that group through the role guardrail (a row each)

A group is judged once a run: a group below two configured ones (one configured group below the
other) is claimed by the first unit that comes to it (``GroupClaims``: the units run on several
threads). A descendants list that fails is an error of the run naming the group, and the group
itself is still judged (with the groups listed before the failure). A unit the deadline cuts short
goes on, next run, after the last group it judged in full (its ``place``, ``sweep_ring``)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .errors import ArmError, InvalidArmId
from .sweep_plan import management_group_scope
from .sweep_ring import _Place
from .sweep_summary import SWEEP_EVENT_TYPE

if TYPE_CHECKING:
    from .sweep_summary import _Tally

MANAGEMENT_GROUP_TYPE = "microsoft.management/managementgroups"    # a descendant that is a group (lower-cased)


class GroupClaims:
    """The management groups judged this run (by scope, case-insensitive), shared by the units' threads."""

    def __init__(self) -> None:
        self._claimed: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, scope: str) -> bool:
        """True for the first caller that asks for ``scope`` this run: that one judges it."""
        key = scope.rstrip("/").lower()
        with self._lock:
            if key in self._claimed:
                return False
            self._claimed.add(key)
            return True


def sweep_management_group(sw, tally: _Tally, mg: str, sweep_id: str, dry_run: bool, deadline: float, *,
                           place: _Place | None = None) -> None:
    """One configured group and every group below it, each judged whole (``_judge_group``), in
    the descendants list's order; ``place`` skips those an earlier run cut short had judged."""
    scope = management_group_scope(mg)
    if sw._clock() > deadline:          # no list begun past the deadline
        tally.truncate()
        return
    place = place or _Place("roles")
    for group in place.items([{"id": scope}, *_groups_below(sw, tally, scope, deadline)]):
        if sw._clock() > deadline:
            break
        if sw.group_claims.claim(group["id"]) and not _judge_group(sw, tally, group["id"], sweep_id, dry_run,
                                                                   deadline):
            break                       # cut short in it: the next run begins at this group again
        place.handled(group["id"])
    if sw._clock() > deadline:          # a list or the decisions cut short
        tally.truncate()


def _groups_below(sw, tally: _Tally, scope: str, deadline: float) -> list[dict]:
    """The management groups below ``scope``, at any depth (``{"id": <group scope>}``, in the
    list's order). A list that fails leaves those listed before it, and an error of the run
    naming the group (or the run cut short: ``cut_short``)."""
    groups: list[dict] = []
    try:
        for item in sw.lister.list_management_group_descendants(scope, deadline=deadline):
            # older api-versions spelled a group's type "/providers/Microsoft.Management/managementGroups"
            if str(item.get("type") or "").lower().removeprefix("/providers/") != MANAGEMENT_GROUP_TYPE:
                continue                # a subscription ("/subscriptions"): swept as one
            try:
                groups.append({"id": management_group_scope(str(item.get("id") or ""))})
            except InvalidArmId as exc:
                tally.error(f"a management group below {scope} has no usable id ({exc}); not judged")
    except ArmError as exc:
        if not sw.cut_short(tally, exc, deadline, what=f"management groups below {scope}"):
            tally.error(f"list the management groups below {scope}: {exc}; judged: the group itself and "
                        f"the {len(groups)} below it listed before the failure")
    return groups


def _judge_group(sw, tally: _Tally, scope: str, sweep_id: str, dry_run: bool, deadline: float) -> bool:
    """The role assignments AT one management group, each through the role guardrail (a group's
    few: no pure pre-judging, a row each). Listed ``atScope()`` (at and above it) and whole
    first: a removal while paging would shift the pages. False when the run was cut short in it;
    a list that fails otherwise is an error of the run (the group's other groups go on)."""
    try:
        listed = [a for a in sw.lister.list_role_assignments(scope, deadline=deadline)
                  if str((a.get("properties") or {}).get("scope", "")).rstrip("/").lower() == scope.lower()]
    except ArmError as exc:
        if sw.cut_short(tally, exc, deadline, what=f"role assignments at {scope}"):
            return False
        tally.error(f"list role assignments at {scope}: {exc}")
        return True
    for a in listed:
        if sw._clock() > deadline:
            return False
        if isinstance(a.get("id"), str):
            tally.seen()
            sw._decide(tally, a["id"], None, sweep_id, dry_run, SWEEP_EVENT_TYPE)
    return sw._clock() <= deadline
