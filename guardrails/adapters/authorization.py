"""Role assignments and role definitions through ``azure-mgmt-authorization`` (api 2022-04-01),
and Entra group membership through Microsoft Graph ``checkMemberGroups``.

Built-in role definitions in the catalogue (``guardrails/model/roles.py``) are resolved with no
call; custom ones, and built-ins the catalogue does not hold (judged by their permissions like a
custom role: ``policy.roles``), are read once and cached, so a role event costs one ARM read (the
assignment) in the steady state.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable
from urllib.parse import quote

from ..errors import FORBIDDEN, REFUSALS, UNAUTHENTICATED, ArmError, ResourceNotFound
from ..logs import emit
from .retry import BudgetedCaller, credential_failure, no_token
from .transport import client_options

log = logging.getLogger("guardrails")

_PLACEHOLDER_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
NEGATIVE_TTL = 5.0      # seconds a Graph "not a member" answer is kept (a "member" one: ``ttl``)


def _raw(pipeline_response, _deserialized, _headers):
    # the older msrest-style SDK's transport response has text(), not json()
    return json.loads(pipeline_response.http_response.text())


def _path(resource_id: str) -> str:
    return quote(resource_id.lstrip("/"), safe="/()")


class AuthorizationGateway:
    permissions = ("Microsoft.Authorization/roleAssignments/read", "Microsoft.Authorization/roleAssignments/delete",
                   "Microsoft.Authorization/roleDefinitions/read")   # guardrails.permissions

    def __init__(self, credential, *, endpoint: str, ca_bundle: str | None = None, timeout: float = 10.0,
                 definition_ttl: float = 600.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from azure.mgmt.authorization import AuthorizationManagementClient

        kwargs = client_options(ca_bundle, retry_total=0)
        self._client = AuthorizationManagementClient(credential, _PLACEHOLDER_SUBSCRIPTION, base_url=endpoint, **kwargs)
        self._caller = BudgetedCaller(timeout=timeout, sleep=sleep, clock=clock)
        self._clock = clock
        self._definition_ttl = definition_ttl
        self._definitions: dict[str, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return self._caller.calls

    def get_assignment(self, assignment_id: str, *, deadline: float | None = None) -> dict:
        body = self._caller.call(
            lambda: self._client.role_assignments.get_by_id(
                _path(assignment_id), cls=_raw, read_timeout=self._caller.timeout_for(deadline)),
            deadline=deadline, what=f"GET {assignment_id}")
        if not isinstance(body, dict):
            raise ResourceNotFound(f"GET {assignment_id}: not a role assignment")
        return body

    def list_assignments_at_scope(self, scope: str, *, deadline: float | None = None) -> list[dict]:
        """Assignments at or above ``scope`` (``$filter=atScope()``), REST-shaped."""
        def go():
            pages = self._client.role_assignments.list_for_scope(
                _path(scope), filter="atScope()", read_timeout=self._caller.timeout_for(deadline))
            return [m.serialize(keep_readonly=True) for m in pages]
        return self._caller.call(go, deadline=deadline, what=f"LIST roleAssignments at {scope}")

    def list_assignments_in(self, scope: str, *, deadline: float | None = None) -> list[dict]:
        """Every assignment at, above and below ``scope`` (no ``$filter``), REST-shaped."""
        def go():
            pages = self._client.role_assignments.list_for_scope(
                _path(scope), read_timeout=self._caller.timeout_for(deadline))
            return [m.serialize(keep_readonly=True) for m in pages]
        return self._caller.call(go, deadline=deadline, what=f"LIST roleAssignments in {scope}")

    def forget_definition(self, guid: str) -> None:
        """Drop a cached custom role definition (it was written): the next read is ARM's."""
        with self._lock:
            self._definitions.pop(guid.lower(), None)

    def forget_definitions(self) -> None:
        """Drop every cached role definition: a sweep judges on definitions read in its own run,
        whatever another worker saw change (the definition event drops the copy only where it
        is handled)."""
        with self._lock:
            self._definitions.clear()

    def delete_assignment(self, assignment_id: str, *, deadline: float | None = None) -> bool | None:
        """True when deleted now; False when it was already gone (idempotent success: a 404, or
        ARM's 204) before this call removed anything: to its first request, or to a retry after
        requests that were all refused (throttled: ``retry.REFUSALS``), so someone else removed it;
        None when it was gone after a retry whose earlier request may have deleted it (its answer
        lost, a 5xx): not knowing, the caller keeps the removal's breaker permit."""
        answers: list[int | None] = []    # each request's answer, the last one's included when an error

        def delete():
            return self._client.role_assignments.delete_by_id(
                _path(assignment_id), cls=lambda resp, _d, _h: resp.http_response.status_code,
                read_timeout=self._caller.timeout_for(deadline))
        try:
            result = self._caller.call(delete, deadline=deadline, what=f"DELETE {assignment_id}", answers=answers)
            earlier = answers
        except ResourceNotFound:
            result, earlier = 204, answers[:-1]      # gone, as ARM's 204 says (the 404 is the last answer)
        if result != 204:
            return True
        return False if all(a in REFUSALS for a in earlier) else None

    def get_role_definition(self, role_definition_id: str, *, deadline: float | None = None):
        """A ``RoleDefinition``: the catalogue's built-ins from it, any other (custom, or a
        built-in outside the catalogue, with the permissions ARM publishes) read and cached. A
        body that is no role definition raises ``ArmError`` (reason ``unexpected_shape``)."""
        from ..model.roles import BUILTIN_ROLES, RoleDefinition, role_guid

        guid = role_guid(role_definition_id)
        builtin = BUILTIN_ROLES.get(guid)
        if builtin is not None:
            return builtin
        now = self._clock()
        with self._lock:
            hit = self._definitions.get(guid)
        if hit is not None and now - hit[1] < self._definition_ttl:
            return hit[0]
        body = self._caller.call(
            lambda: self._client.role_definitions.get_by_id(
                _path(role_definition_id), cls=_raw, read_timeout=self._caller.timeout_for(deadline)),
            deadline=deadline, what=f"GET {role_definition_id}")
        try:
            definition = RoleDefinition.from_arm(body)
        except ValueError as exc:         # ARM answered, but not with a role definition we can judge
            raise ArmError(f"GET {role_definition_id}: malformed role definition: {exc}"[:300],
                           reason="unexpected_shape") from None
        with self._lock:
            self._definitions[guid] = (definition, now)
        return definition


class GraphGroupResolver:
    """``is_member(principal, group)`` through Graph ``POST /directoryObjects/{id}/checkMemberGroups``
    (transitive membership). A "member" answer is cached for ``ttl`` seconds, a "not a member" one
    for ``negative_ttl`` seconds only (a burst of one principal's assignments costs one call, but
    a principal just added to a group is not refused for minutes on an answer Graph gave before it
    replicated); ``CACHE_SIZE`` answers at most: expired ones and then the oldest go first; a
    dropped answer costs one Graph call, never a different decision. A 404 — the directory does
    not hold the principal: just created and not yet replicated to Graph, or deleted — raises
    ``PrincipalNotFound`` (an ``ArmTransient``), never "not a member" nor "member": only the
    caller knows how old the assignment is, so only it can tell the two apart
    (``policy.roles.evaluate_assignment``: transient within ``REPLICATION_GRACE_SECONDS`` of the
    assignment's creation, a member of no group after). A 404 is never cached, as either answer
    or as itself: the next ask (a redelivery, the principal replicated since) asks Graph again.
    The subject may be a user or a service principal (or a group), so the identity needs what
    Graph documents for each kind of subject
    (directoryobject-checkmembergroups, application permissions): a user ``User.Read.All`` and
    ``GroupMember.Read.All``, a service principal ``Application.Read.All``, a group
    ``GroupMember.Read.All``. Their union is narrower than the alternative ``Directory.Read.All``
    (every directory object and property)."""

    # Graph application permissions (admin consent), least privileged per subject kind
    graph_permissions = ("Application.Read.All", "GroupMember.Read.All", "User.Read.All")
    CACHE_SIZE = 4096   # (principal, group) answers kept

    def __init__(self, credential, *, endpoint: str = "https://graph.microsoft.com", ca_bundle: str | None = None,
                 timeout: float = 5.0, ttl: float = 300.0, negative_ttl: float = NEGATIVE_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from azure.core import PipelineClient
        from azure.core.pipeline import policies

        self._endpoint = endpoint.rstrip("/")
        self._timeout, self._ttl, self._clock = timeout, ttl, clock
        self._negative_ttl = min(negative_ttl, ttl)
        kwargs = client_options(ca_bundle)
        pipeline_policies = [
            policies.HeadersPolicy(), policies.UserAgentPolicy("guardrails"),
            policies.ProxyPolicy(proxies=kwargs.pop("proxies", None)),
            policies.BearerTokenCredentialPolicy(credential, "https://graph.microsoft.com/.default"),
            policies.NetworkTraceLoggingPolicy(),
        ]
        self._client = PipelineClient(self._endpoint, policies=pipeline_policies, **kwargs)
        self._cache: dict[tuple[str, str], tuple[bool, float]] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def is_member(self, principal_id: str, group_id: str) -> bool:
        from azure.core.exceptions import AzureError
        from azure.core.rest import HttpRequest

        from ..errors import ArmError, ArmTransient

        key = (principal_id.lower(), group_id.lower())
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[1] < self._kept(hit[0]):
            return hit[0]
        request = HttpRequest("POST", f"{self._endpoint}/v1.0/directoryObjects/{quote(principal_id, safe='')}/checkMemberGroups",
                              json={"groupIds": [group_id]})
        self.calls += 1
        try:
            response = self._client.send_request(request, read_timeout=self._timeout)
        except AzureError as exc:
            if credential_failure(exc):
                raise no_token(exc, "Graph checkMemberGroups") from exc
            raise ArmTransient(f"Graph checkMemberGroups failed ({type(exc).__name__})") from exc
        if response.status_code == 404:
            # neither "member" nor "not a member", and not kept: Graph does not know the principal
            # yet — replication lags its creation by seconds to minutes — or any more (deleted);
            # the caller tells which by the assignment's age
            raise self._not_found()
        elif response.status_code == 401:
            raise ArmError("Graph checkMemberGroups answered 401: the token of the function's identity was rejected",
                           status=401, reason=UNAUTHENTICATED)
        elif response.status_code == 403:
            # not a passing fault: the deployment lacks a grant; say which, where operators look
            why = (f"Graph checkMemberGroups answered {response.status_code}: grant the function's identity the "
                   f"Microsoft Graph application permissions {', '.join(self.graph_permissions)} with admin consent "
                   "(README, Deploy to Azure)")
            emit(log, logging.ERROR, "graph_permission_missing", status=response.status_code,
                 permissions=list(self.graph_permissions))
            raise ArmError(why, status=403, reason=FORBIDDEN)
        elif response.status_code >= 400:
            kind = ArmTransient if response.status_code >= 500 or response.status_code == 429 else ArmError
            raise kind(f"Graph checkMemberGroups answered {response.status_code}", status=response.status_code)
        else:
            member = group_id.lower() in self._member_groups(response)
        with self._lock:
            kept = self._cache.pop(key, None)
            # a call sent after this one that answered first keeps its (newer) answer
            entry = kept if kept is not None and kept[1] > now else (member, now)
            while self._cache:                      # oldest first: expired, or over the bound
                oldest = next(iter(self._cache))
                if len(self._cache) < self.CACHE_SIZE and now - self._cache[oldest][1] < self._ttl:
                    break
                del self._cache[oldest]
            self._cache[key] = entry
        return member

    def _kept(self, member: bool) -> float:
        """How long an answer is believed: a "member" one ``ttl``, a "not a member" one
        ``negative_ttl`` (a membership Graph has not replicated yet removes nothing for long)."""
        return self._ttl if member else self._negative_ttl

    @staticmethod
    def _not_found():
        from ..policy.roles import PrincipalNotFound

        return PrincipalNotFound("Graph checkMemberGroups answered 404: the principal is not (yet) in the directory")

    @staticmethod
    def _member_groups(response) -> set[str]:
        """The group ids of a checkMemberGroups answer (``{"value": ["<id>", …]}``), lower-case.
        Anything else — another success status, a body that is no JSON, ``value`` missing or no
        list of strings — is ``ArmError`` (reason ``unexpected_shape``): a decision that cannot
        be made, audited as ``failed`` like any Graph fault (the body is never quoted)."""
        from ..errors import ArmError

        def odd(what: str) -> ArmError:
            return ArmError(f"Graph checkMemberGroups answered {response.status_code} with {what}",
                            reason="unexpected_shape", status=response.status_code)

        if response.status_code != 200:
            raise odd("no member groups")
        try:
            body = response.json()
        except ValueError:                     # json.JSONDecodeError, or no body at all
            raise odd("a body that is not JSON") from None
        groups = body.get("value") if isinstance(body, dict) else None
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise odd("no list of group ids")
        return {g.lower() for g in groups}
