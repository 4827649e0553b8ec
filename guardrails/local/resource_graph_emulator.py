"""Azure Resource Graph for the local emulator: ``POST /providers/Microsoft.ResourceGraph/resources``.

It answers the one query shape the product sends (``guardrails.adapters.graph.build_query``):
``Resources | where type in~ ('…', …) | project <columns> [| order by id asc]``, over the
subscriptions named in the request, ``objectArray`` rows, ``$top`` rows a page with a ``$skipToken``.
Ordered by id, the rows come in id order; without the order by, in a different order on every request,
as Resource Graph documents an unsorted result ("random and not repeatable"): paging such a query
repeats some rows and leaves others out, here as there. Any other
KQL is refused with Resource Graph's 400 ``BadRequest`` rather than guessed at. Like the real
index it holds no ``etag``. Faults and the request log apply as for every route.
"""

from __future__ import annotations

import copy
import random
import re
from typing import TYPE_CHECKING

from guardrails.local.arm_emulator_http import ArmError, EmuRequest, EmuResponse
from guardrails.local.arm_emulator_list import _resources
from guardrails.local.arm_emulator_routes import authenticate

if TYPE_CHECKING:
    from guardrails.local.emulator import AzureEmulator

API_VERSIONS = ("2021-03-01", "2022-10-01", "2024-04-01")
_QUERY = re.compile(r"^\s*Resources\s*\|\s*where\s+type\s+in~\s*\((?P<types>[^)]*)\)\s*\|\s*project\s+"
                    r"(?P<columns>[A-Za-z_, ]+?)(?P<order>\s*\|\s*order\s+by\s+id\s+asc)?\s*$", re.IGNORECASE)
_LITERAL = re.compile(r"^\s*'([^']*)'\s*$")


class ResourceGraphRoute:
    host = "management"

    def claims(self, req: EmuRequest) -> bool:
        s = [x.lower() for x in req.segments]
        return req.method == "POST" and s == ["providers", "microsoft.resourcegraph", "resources"]

    def handle(self, emu: "AzureEmulator", req: EmuRequest) -> EmuResponse:
        authenticate(req, emu.tenant_id)
        if req.query.get("api-version") not in API_VERSIONS:
            raise ArmError(400, "InvalidApiVersionParameter",
                           f"The api-version '{req.query.get('api-version')}' is invalid.")
        body = req.body if isinstance(req.body, dict) else {}
        subs = body.get("subscriptions")
        if not isinstance(subs, list) or not subs or not all(isinstance(s, str) for s in subs):
            raise ArmError(400, "BadRequest", "Please provide below info when asking for support: "
                           "subscriptions must be a non-empty list of subscription ids.")
        m = _QUERY.match(str(body.get("query") or ""))
        if m is None:
            raise ArmError(400, "BadRequest", "Query is invalid (the local emulator answers only "
                           "'Resources | where type in~ (...) | project ... [| order by id asc]').")
        types = set()
        for part in m.group("types").split(","):
            lit = _LITERAL.match(part)
            if lit is None:
                raise ArmError(400, "BadRequest", f"Query is invalid near {part.strip()[:40]!r}.")
            types.add(lit.group(1).lower())
        columns = [c.strip() for c in m.group("columns").split(",") if c.strip()]
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        if options.get("resultFormat", "objectArray") != "objectArray":
            raise ArmError(400, "BadRequest", "The local emulator answers resultFormat objectArray only.")
        top = max(1, min(1000, int(options.get("$top") or 100)))
        try:
            start = int(options.get("$skipToken") or 0)
        except (TypeError, ValueError):
            raise ArmError(400, "BadRequest", "The skip token is not valid.") from None
        wanted = {s.lower() for s in subs}
        with emu.store.lock:
            emu.store.complete_due()
            rows = [{c: copy.deepcopy(r.get(c)) for c in columns}
                    for rid, r in sorted(_resources(emu).items())
                    if rid.split("/")[2:3] and rid.split("/")[2] in wanted
                    and str(r.get("type", "")).lower() in types]
        if m.group("order") is None:
            random.Random().shuffle(rows)         # unsorted: no order that holds from one page to the next
        out = {"totalRecords": len(rows), "count": len(rows[start:start + top]), "resultTruncated": "false",
               "facets": [], "data": rows[start:start + top]}
        if start + top < len(rows):
            out["$skipToken"] = str(start + top)
        return EmuResponse(200, out)
