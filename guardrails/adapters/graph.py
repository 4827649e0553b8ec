"""Azure Resource Graph as the sweep's lister for very large estates (``GUARDRAILS_SWEEP_LISTER=graph``).

One query lists every covered top-level type across up to 1,000 subscriptions, 1,000 rows a page,
instead of one ARM list per type per subscription. Resource Graph answers from an index that can
lag ARM by up to minutes, so the sweep only uses its rows to choose: a row the pure filter finds
violating is decided on a fresh ARM read (the event path's decision), never on the indexed body.
Child types (computes, online endpoints, model versions) are not in the index the same way and are
still listed through ARM under each parent.

Rows are paged in ``id`` order (``order by id asc``): without an order by a unique column, Resource
Graph documents the result order as random and not repeatable, so the pages of one listing could
repeat some rows and never show others (a drifted resource missed), and the sweep's resume point
(the last id handled in full) would mean nothing.

Resource Graph throttles per user: 15 queries per 5 seconds (``x-ms-user-quota-remaining``), so
queries take a token from their own bucket (3/s, burst 15) and a 429 is retried after
``Retry-After`` within the page budget. Through the real ``azure-mgmt-resourcegraph`` client.
"""

from __future__ import annotations

import re
import time
from typing import Callable, Iterator, Sequence

from ..errors import ArmError
from ..model.resource import ResourceType
from ..ratelimit import TENANT_KEY, RateLimiter
from .retry import BudgetedCaller
from .transport import client_options

QUERIES_PER_SECOND = 3.0           # 15 per 5 seconds per user
QUERY_BURST = 15.0
MAX_SUBSCRIPTIONS = 1000           # per query
PAGE_ROWS = 1000                   # the service's maximum $top
_TYPE = re.compile(r"^[A-Za-z0-9.]+(/[A-Za-z0-9]+)+$")
PROJECT = "id, name, type, location, kind, sku, tags, identity, properties"


def build_query(rtypes: Sequence[ResourceType]) -> str:
    """The KQL that lists ``rtypes``: ``Resources | where type in~ (…) | project … | order by id asc``."""
    names = []
    for t in rtypes:
        if not _TYPE.match(t.name):            # catalogue names only: nothing user-given reaches KQL
            raise ValueError(f"not a resource type name: {t.name!r}")
        names.append(f"'{t.name.lower()}'")
    return f"Resources | where type in~ ({', '.join(names)}) | project {PROJECT} | order by id asc"


class ResourceGraphLister:
    permissions = ("Microsoft.ResourceGraph/resources/read",)     # guardrails.permissions

    def __init__(self, credential, *, endpoint: str, ca_bundle: str | None = None, timeout: float = 10.0,
                 page_budget: float = 60.0, queries: RateLimiter | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        from azure.mgmt.resourcegraph import ResourceGraphClient

        self._client = ResourceGraphClient(credential, base_url=endpoint, **client_options(ca_bundle, retry_total=0))
        self._caller = BudgetedCaller(timeout=timeout, sleep=sleep, clock=clock)
        self._clock = clock
        self.queries = queries or RateLimiter(QUERIES_PER_SECOND, QUERY_BURST, clock=clock, sleep=sleep)
        self.page_budget = page_budget
        self.pages = 0

    def list_types(self, subscriptions: Sequence[str], rtypes: Sequence[ResourceType], *,
                   deadline: float | None = None) -> Iterator[dict]:
        """Every resource of ``rtypes`` in ``subscriptions`` as Resource Graph indexes it (REST
        shape: id, name, type, location, kind, sku, tags, identity, properties). ``deadline`` (the
        sweep's, on this lister's clock): no page is asked for past it, and a page's retries
        (a ``Retry-After``) end there too; the listing then simply stops (the caller sees its
        deadline passed)."""
        if not subscriptions or not rtypes:
            return
        query = build_query(rtypes)
        for i in range(0, len(subscriptions), MAX_SUBSCRIPTIONS):
            batch = list(subscriptions[i:i + MAX_SUBSCRIPTIONS])
            token: str | None = None
            while True:
                if deadline is not None and self._clock() > deadline:
                    return
                rows, token = self._page(batch, query, token, deadline)
                yield from rows
                if not token:
                    break

    def _page(self, subscriptions: list[str], query: str, token: str | None,
              until: float | None = None) -> tuple[list[dict], str | None]:
        from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

        deadline = self._clock() + self.page_budget
        if until is not None:
            deadline = min(deadline, until)
        request = QueryRequest(subscriptions=subscriptions, query=query,
                               options=QueryRequestOptions(top=PAGE_ROWS, skip_token=token,
                                                           result_format="objectArray"))

        def go():
            self.queries.acquire(TENANT_KEY)
            return self._client.resources(request, read_timeout=self._caller.timeout_for(deadline))

        answer = self._caller.call(go, deadline=deadline, what="Resource Graph query")
        data = answer.data
        if not isinstance(data, list):
            raise ArmError("Resource Graph answered rows that are not an object array")
        self.pages += 1
        return [r for r in data if isinstance(r, dict)], answer.skip_token or None


__all__ = ["ResourceGraphLister", "build_query"]
