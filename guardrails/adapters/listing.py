"""ARM list operations for timers (reconciling sweep, exemption expiry): paged, paced, retried.

Why the types' own list operations and not ``resources.list(filter="resourceType eq …")``: the
generic ``/resources`` list answers ``GenericResourceExpanded`` items (id, name, type, location,
tags, sku, kind, …) WITHOUT ``properties`` — evaluating them would need one GET per resource.
``GET /subscriptions/{sub}/providers/{Namespace}/{type}`` (storage accounts, Key Vault
``listBySubscription``, registries, workspaces) answers full bodies as GET does, so a page of
resources costs one read. Child types have no subscription-wide list: ``workspaces/computes``
are listed per parent workspace. Azure Resource Graph is cheaper still for very large estates
(``adapters.graph``, ``GUARDRAILS_SWEEP_LISTER=graph``); its index lags ARM by up to minutes, so
what it finds violating is read again here before a decision.

Every page goes through the SDK pipeline (``ResourceManagementClient.send_request``: the same
credential policy, transport and TLS settings as every other ARM call), takes a read token from
the subscription's bucket (each attempt does, retries included), follows ``nextLink`` until it
is absent, and is retried on 429/5xx honouring ``Retry-After`` within ``page_budget`` seconds.

A caller with a time budget (the sweep) passes its ``deadline``: no page is requested once it
has passed (the iterator simply ends: the caller, who knows its deadline, says it was cut short;
or, when it passes ``on_cut``, that is called first: the expiry timer raises there, since a list
that ended and one the deadline stopped with pages left are the same to a loop over its items),
and a page's retries are bounded by ``min(deadline, now + page_budget)``, so a 429's
``Retry-After`` that does not fit is an ``ArmThrottled`` at once, never a wait past the budget.

``nextLink`` is followed only while it stays on the configured ARM endpoint (``https``, the same
host, case-insensitive, and port, no user info): the SDK pipeline attaches the ARM bearer token
to every request, so a link elsewhere would hand it out. A ``nextLink`` naming a page this list
already read (ARM answering the same page again) or a list past ``MAX_PAGES`` pages stops the
list with an ``ArmError`` (an error in the run's summary), never a loop that yields nothing.
"""

from __future__ import annotations

import contextlib
import logging

import time
from typing import Callable, Iterator
from urllib.parse import quote, urlsplit

from ..errors import ArmError, ResourceNotFound
from ..logs import emit
from ..model.resource import ResourceType, lookup_type
from ..ratelimit import RateLimiter, TENANT_KEY, limit_key
from .arm import _PLACEHOLDER_SUBSCRIPTION, encode_id
from .retry import BudgetedCaller
from .transport import client_options

log = logging.getLogger("guardrails")

AUTHZ_API_VERSION = "2022-04-01"
SUBSCRIPTIONS_API_VERSION = "2022-12-01"
MANAGEMENT_GROUPS_API_VERSION = "2020-05-01"
# subscription states (``SubscriptionState``) in which nothing can be fixed: resources are
# deallocated and read-only (Disabled, Expired) or the subscription is gone (Deleted)
INACTIVE_SUBSCRIPTION_STATES = frozenset({"disabled", "deleted", "expired"})
# pages one list may take: far past any real list (a type with 100,000 resources in one
# subscription is 1,000 pages of ARM's 100), short of a list that never ends
MAX_PAGES = 5000


def parent_type(rtype: ResourceType) -> ResourceType | None:
    """The catalogue type of a child type's parent (``…/workspaces`` for ``…/workspaces/computes``)."""
    return lookup_type(rtype.name.rsplit("/", 1)[0]) if rtype.name.count("/") > 1 else None


class ArmLister:
    @staticmethod
    def permissions() -> tuple[str, ...]:
        """List each catalogue type, role assignments, subscriptions, the groups below a management
        group (``guardrails.permissions``)."""
        from ..model.resource import CATALOG
        return (*(f"{t.name}/read" for t in CATALOG.values()), "Microsoft.Authorization/roleAssignments/read",
                "Microsoft.Resources/subscriptions/read",
                # the sweep's management groups: the groups below each configured one (granted at the
                # group by ``infra/management-group.bicep``, inherited by every group below it)
                "Microsoft.Management/managementGroups/descendants/read",
                # event coverage (``guardrails.coverage``): is each subscription still wired to us?
                "Microsoft.EventGrid/systemTopics/read", "Microsoft.EventGrid/systemTopics/eventSubscriptions/read")

    def __init__(self, credential, *, endpoint: str, reads: RateLimiter, ca_bundle: str | None = None,
                 timeout: float = 10.0, page_budget: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from azure.mgmt.resource.resources import ResourceManagementClient

        kwargs = client_options(ca_bundle, retry_total=0)
        self._client = ResourceManagementClient(credential, _PLACEHOLDER_SUBSCRIPTION, base_url=endpoint, **kwargs)
        self._endpoint = endpoint.rstrip("/")
        self._caller = BudgetedCaller(timeout=timeout, sleep=sleep, clock=clock)
        self._clock = clock
        self.reads = reads
        self.page_budget = page_budget
        self.pages = 0               # list pages fetched (for the summary and the benchmark)

    @property
    def calls(self) -> int:
        return self._caller.calls

    # ---------------------------------------------------------------------------------
    def _get_page(self, url: str, key: str, until: float | None = None) -> dict:
        body = self._get_json(url, key, until, what="LIST")
        if not isinstance(body, dict) or not isinstance(body.get("value", []), list):
            raise ArmError(f"LIST {url[:200]}: ARM answered a body without a 'value' list")
        self.pages += 1
        return body

    def exists(self, resource_id: str, api_version: str, *, deadline: float | None = None) -> bool:
        """Whether ARM holds ``resource_id`` (one GET, within the read budget): False when it
        answers 404, True for a body; any other failure raises as a list's would."""
        url = f"{self._endpoint}/{encode_id(resource_id).lstrip('/')}?api-version={api_version}"
        try:
            self._get_json(url, limit_key(resource_id), deadline, what="GET")
        except ResourceNotFound:
            return False
        return True

    def _get_json(self, url: str, key: str, until: float | None, *, what: str):
        from azure.core.rest import HttpRequest

        deadline = self._clock() + self.page_budget
        if until is not None:              # the caller's budget bounds the page's retries too
            deadline = min(deadline, until)

        def go() -> dict:
            self.reads.acquire(key, until=deadline)     # never past the page's (the run's) deadline
            resp = self._client.send_request(HttpRequest("GET", url), stream=False,
                                             read_timeout=self._caller.timeout_for(deadline))
            resp.raise_for_status()
            return resp.json()

        penalize = getattr(self.reads, "penalizing", None)       # a 429 drains the subscription's bucket
        with (penalize(key) if penalize is not None else contextlib.nullcontext()):
            return self._caller.call(go, deadline=deadline, what=f"{what} {url.split('?', 1)[0][-200:]}")

    def _items(self, path: str, query: str, key: str, deadline: float | None = None,
               on_cut: Callable[[], None] | None = None) -> Iterator[dict]:
        """Every item of a list operation, page after page (``nextLink`` as given by ARM, while it
        stays on the endpoint), until ``deadline`` (None: none) has passed (``on_cut`` called then,
        if given: pages were left)."""
        url: str | None = f"{self._endpoint}/{path.lstrip('/')}?{query}"
        read: set[str] = set()
        while url:
            if deadline is not None and self._clock() > deadline:
                if on_cut is not None:
                    on_cut()
                return                     # the caller's budget is spent: it says the list was cut short
            read.add(url)
            body = self._get_page(url, key, deadline)
            for item in body.get("value") or ():
                if isinstance(item, dict):
                    yield item
            nxt = body.get("nextLink")
            if not isinstance(nxt, str) or not nxt:
                return
            what = f"LIST {url.split('?', 1)[0][-200:]}"
            if not self._on_endpoint(nxt):
                raise ArmError(f"{what}: nextLink leads off the ARM endpoint ({_where(nxt)}); not followed, "
                               "the list is incomplete", reason="next_link_refused")
            if nxt in read:
                raise ArmError(f"{what}: nextLink names a page already read; the list stopped after "
                               f"{len(read)} page(s) and is incomplete", reason="next_link_loop")
            if len(read) >= MAX_PAGES:
                raise ArmError(f"{what}: more than {MAX_PAGES} pages; the list stopped and is incomplete",
                               reason="too_many_pages")
            url = nxt

    def _on_endpoint(self, link: str) -> bool:
        """Whether ``link`` goes to the configured ARM endpoint: https, its host (case-insensitive)
        and port, no user info."""
        try:
            got, want = urlsplit(link), urlsplit(self._endpoint)
            return (got.scheme.lower() == "https" and got.username is None and got.password is None
                    and got.hostname is not None and got.hostname == want.hostname
                    and (got.port or 443) == (want.port or 443))
        except ValueError:                 # a port that is not a number, a malformed IPv6 host
            return False

    # ---------------------------------------------------------------------------------
    def list_type(self, subscription_id: str, rtype: ResourceType, *, resource_group: str | None = None,
                  deadline: float | None = None, on_cut: Callable[[], None] | None = None) -> Iterator[dict]:
        """Every resource of ``rtype`` in the subscription (or one of its resource groups), full
        bodies. A child type is listed under each parent."""
        ns, *types = rtype.name.split("/")
        scope = f"/subscriptions/{subscription_id}"
        if resource_group:
            scope += f"/resourceGroups/{resource_group}"
        key = limit_key(scope)
        query = f"api-version={rtype.api_version}"
        if len(types) == 1:
            yield from self._items(encode_id(f"{scope}/providers/{ns}/{types[0]}"), query, key, deadline, on_cut)
            return
        parent = parent_type(rtype)
        if parent is None:
            raise ArmError(f"no catalogue entry for the parent type of {rtype.name}")
        for p in self.list_type(subscription_id, parent, resource_group=resource_group, deadline=deadline,
                                on_cut=on_cut):
            if isinstance(p.get("id"), str):
                yield from self.list_children(p["id"], rtype, deadline=deadline, on_cut=on_cut)

    def list_children(self, parent_id: str, rtype: ResourceType, *, deadline: float | None = None,
                      on_cut: Callable[[], None] | None = None) -> Iterator[dict]:
        """Every ``rtype`` child of one parent (``{parent id}/{last type segment}``). A parent
        deleted since it was listed (a workspace deleted mid-run) has none: its list answered 404
        (ARM's ``ParentResourceNotFound``; ``ResourceGroupNotFound`` for its group) and so did one
        read of the parent (INFO ``guardrail_list_parent_gone``). ARM answers 404 for a child type
        it does not know there too (``InvalidResourceType``): with the parent still there, or
        unreadable, the 404 is raised."""
        try:
            yield from self._items(encode_id(f"{parent_id}/{rtype.name.rsplit('/', 1)[-1]}"),
                                   f"api-version={rtype.api_version}", limit_key(parent_id), deadline, on_cut)
        except ResourceNotFound:
            try:
                gone = not self.exists(parent_id, rtype.api_version, deadline=deadline)
            except ArmError:
                gone = False
            if not gone:
                raise
            emit(log, logging.INFO, "guardrail_list_parent_gone", resource_id=parent_id[:300],
                 resource_type=rtype.name)

    def list_role_assignments(self, scope: str, *, at_scope: bool = True, deadline: float | None = None,
                              on_cut: Callable[[], None] | None = None) -> Iterator[dict]:
        """Role assignments at ``scope`` (``atScope()``: at it and above) or, with ``at_scope``
        False, at, above and below it; REST-shaped. Management-group scopes are read here: no
        subscription system topic delivers their events."""
        query = f"api-version={AUTHZ_API_VERSION}"
        if at_scope:
            query += "&$filter=" + quote("atScope()", safe="()")
        path = encode_id(f"{scope.rstrip('/')}/providers/Microsoft.Authorization/roleAssignments")
        yield from self._items(path, query, limit_key(scope) if scope.lower().startswith("/subscriptions/")
                               else TENANT_KEY, deadline, on_cut)

    def list_management_group_descendants(self, scope: str, *, deadline: float | None = None,
                                          on_cut: Callable[[], None] | None = None) -> Iterator[dict]:
        """Everything below the management group ``scope`` (its full id), at any depth
        (``ManagementGroups_GetDescendants``: ``{id, type, name, properties: {displayName,
        parent: {id}}}``, ``type`` ``Microsoft.Management/managementGroups`` for a group,
        ``/subscriptions`` for a subscription), paged by ``nextLink``. The sweep judges the role
        assignments of each group below a configured one: no Event Grid source delivers them."""
        yield from self._items(encode_id(f"{scope.rstrip('/')}/descendants"),
                               f"api-version={MANAGEMENT_GROUPS_API_VERSION}", TENANT_KEY, deadline, on_cut)

    def list_subscriptions(self, *, deadline: float | None = None,
                           on_cut: Callable[[], None] | None = None) -> list[str]:
        """The subscription ids the identity can see (``GET /subscriptions``) that can still hold
        drift: every state but ``INACTIVE_SUBSCRIPTION_STATES``. ``Warned`` and ``PastDue`` (billing
        trouble) are still active: their resources run and take writes, so they are swept."""
        return [str(s.get("subscriptionId")) for s in
                self._items("subscriptions", f"api-version={SUBSCRIPTIONS_API_VERSION}", TENANT_KEY, deadline, on_cut)
                if s.get("subscriptionId")
                and str(s.get("state") or "Enabled").lower() not in INACTIVE_SUBSCRIPTION_STATES]


def _where(link: str) -> str:
    """A refused link's scheme and host only (its query may carry tokens of its own)."""
    try:
        parts = urlsplit(link)
        return f"{parts.scheme}://{parts.hostname or '?'}"[:120]
    except ValueError:
        return "unparsable"
