"""Pass 3 of metadata validation (``guardrails.policy.loader``): semantics, then the model value.

``_semantics`` checks one document by its kind and builds its policy (``Policy``, ``RolePolicy``,
…) or returns its findings. Resource kind: catalogue types, one operator per ``expect``, action
``validate()``, unique rule ids, tag keys unique in any case, resource group names in ARM's
grammar, no comparison on a path that is an object or an array. Role-assignments kind
(``_role_semantics``): role names in the built-in catalogue (or GUIDs), principal/group object
ids are GUIDs, grant and strict scopes are ARM scopes, a grant names somebody. Both: subscription
GUIDs (kept normalised: lower-case, dashed, trimmed), exemption scopes and timezone-aware expiry
(``_exemptions``). The secrets kind: ``guardrails/secrets/policy.py``; the check kinds (job,
model-registry, check-access): ``guardrails/checks/policy_schema.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping

from guardrails.model.policy import (
    DEFAULT_BREAKER, DEFAULT_FLIP_FLOP, DEFAULT_NOTIFY_TAG, ROLE_KIND, AnyPolicy, Breaker,
    Exemption, FlipFlop, Policy, PrivateEndpointFirst, PrivilegedRoles, RoleGrant, RolePolicy, RoleSelector, Rule, Selector, freeze,
)
from guardrails.model.known_properties import container_path, unknown_path
from guardrails.model.resource import CATALOG, lookup_type
from guardrails.model.roles import BUILTIN_ROLES, builtin_by_name, normalize_guid
from guardrails.checks import policy_schema as check_schema
from guardrails.policy.findings import _finding, _hint
from guardrails.policy.structure import _kind
from guardrails.remediation.actions import actions

# A rule's property path is read by code generated per segment (``guardrails.policy.codegen``: one
# nested block each, and Python allows 100 levels), so a path of ~97 segments, which the schema
# accepts, would make every worker's policy set fail to compile. The deepest path ARM returns for a
# catalogued type has 4 segments (``properties.serviceManagedResourcesSettings.cosmosDb.
# collectionsThroughput``); 32 leaves room for any real one.
MAX_PATH_SEGMENTS = 32


def _check_scope(scope: str) -> str | None:
    from guardrails.errors import InvalidArmId
    from guardrails.model.arm_id import parse_scope   # lazy: the ARM id grammar lives there

    try:
        parse_scope(scope)
    except InvalidArmId as exc:
        return f"not a valid ARM scope {scope!r}: {exc}"
    return None


def _resource_scope(scope: str) -> str | None:
    """A resource policy's exemption must be able to contain a resource id: a resource id names
    its subscription, never its management group, so a management-group scope would silently
    exempt nothing."""
    if not scope.strip().lower().startswith("/subscriptions/"):
        return ("a management group scope never matches: resource ids do not name their management "
                "group; exempt subscriptions, resource groups or resources instead")
    return None


def _parse_expires(text: str) -> tuple[datetime | None, str | None]:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None, f"'{text}' is not an ISO 8601 datetime (e.g. 2027-01-31T00:00:00Z)"
    if when.tzinfo is None or when.utcoffset() is None:
        return None, f"'{text}' has no timezone: write it with Z or an offset (e.g. 2027-01-31T00:00:00Z)"
    return when, None


def _exemptions(doc: Mapping[str, Any], found: list[tuple[str, str]]) -> tuple[Exemption, ...]:
    exemptions: list[Exemption] = []
    for i, ed in enumerate(doc.get("exemptions", ())):
        path = f"$.exemptions[{i}]"
        problem = _check_scope(ed["scope"]) or _resource_scope(ed["scope"])
        if problem:
            found.append((f"{path}.scope", problem))
        expires = None
        if "expires" in ed:
            expires, problem = _parse_expires(ed["expires"])
            if problem:
                found.append((f"{path}.expires", problem))
        exemptions.append(Exemption(ed["scope"], ed["reason"], ed["owner"], expires))
    return tuple(exemptions)


def _subscriptions(sel: Mapping[str, Any], found: list[tuple[str, str]], *,
                   refuse_repeats: bool = True) -> tuple[str, ...]:
    """The selector's subscription ids, normalised (lower-case dashed GUIDs, surrounding
    whitespace such as a YAML block scalar's line break dropped): the evaluators compare them with
    the ids of events and listings as they are, so a raw ``"<guid>\n"`` would select nothing.

    A GUID listed twice (in any spelling) is a finding for ``validate``/``sync``; a worker reading
    rows (``refuse_repeats`` False) keeps it once: an earlier release synced such a row (it compared
    the raw strings), and refusing it now would leave the worker with no policy set at all."""
    out: list[str] = []
    first: dict[str, int] = {}
    for i, sub in enumerate(sel.get("subscriptions", ())):
        path = f"$.selector.subscriptions[{i}]"
        guid = normalize_guid(sub)
        if guid is None:
            found.append((path, f"{sub!r} is not a subscription GUID (e.g. 3f2b6c1e-8a4d-4c7e-9b15-2d7e6f0a9c31)"))
            continue
        if guid in first:
            if refuse_repeats:
                found.append((path, f"subscription {guid} is listed twice (also $.selector.subscriptions[{first[guid]}])"))
            continue
        first[guid] = i
        out.append(guid)
    return tuple(out)


def _resource_groups(sel: Mapping[str, Any], found: list[tuple[str, str]]) -> tuple[str, ...]:
    """The selector's resource group names, held to ARM's resource group grammar: a name the
    selector compares with the one in a resource id, so an id, a wildcard or a name with a space
    would select nothing."""
    from guardrails.errors import InvalidArmId
    from guardrails.model.arm_id import _Parser      # lazy, like the ARM id grammar above

    first: dict[str, int] = {}
    for i, rg in enumerate(sel.get("resource_groups", ())):
        path = f"$.selector.resource_groups[{i}]"
        if "/" in rg:
            found.append((path, f"{rg!r} is not a resource group name: write the name alone (e.g. 'rg-ml-prod'); "
                          "to cover one subscription's resources use selector.subscriptions"))
            continue
        if "*" in rg:
            found.append((path, f"{rg!r}: wildcards are not supported; list every resource group name"))
            continue
        try:
            _Parser(rg, "resource group name").check_rg(rg)
        except InvalidArmId as exc:
            found.append((path, f"not a valid resource group name: {exc}"))
            continue
        if rg.lower() in first:
            found.append((path, f"resource group '{rg}' is listed twice (names are case-insensitive; also "
                          f"$.selector.resource_groups[{first[rg.lower()]}])"))
            continue
        first[rg.lower()] = i
    return tuple(sel.get("resource_groups", ()))


def _semantics(source: str, doc: dict[str, Any], *, check_paths: bool = True) -> tuple[AnyPolicy | None, list[str]]:
    if _kind(doc) == ROLE_KIND:
        return _role_semantics(source, doc, check_paths=check_paths)
    if _kind(doc) == "secrets":
        from guardrails.secrets.policy import semantics as secret_semantics
        policy, found = secret_semantics(doc, strict=check_paths)
        if policy is not None:
            from dataclasses import replace
            policy = replace(policy, source=source)
        return policy, [_finding(source, doc, p, m) for p, m in found]
    if _kind(doc) in check_schema.REQUIRED_KEYS:       # job, model-registry, check-access
        policy, found = check_schema.semantics(_kind(doc), doc, source)
        return policy, [_finding(source, doc, p, m) for p, m in found]
    found: list[tuple[str, str]] = []
    sel = doc["selector"]
    types = list(sel["resource_types"])
    for i, t in enumerate(types):
        if lookup_type(t) is None:
            found.append((f"$.selector.resource_types[{i}]", f"resource type '{t}' is not in the catalogue"
                          f"{_hint(t, [c.name for c in CATALOG.values()])}"))
    # like paths, a repeated subscription and resource group names are held to this release's rules
    # by ``validate``/``sync`` only: a row an earlier release wrote ("rg*", one GUID in two cases)
    # must not make a worker's whole policy set unreadable
    subscriptions = _subscriptions(sel, found, refuse_repeats=check_paths)
    resource_groups = _resource_groups(sel, found) if check_paths else tuple(sel.get("resource_groups", ()))
    tag_keys: dict[str, str] = {}
    for k, v in sel.get("tags", {}).items():
        if k.lower() in tag_keys:
            found.append(("$.selector.tags", f"tag keys '{tag_keys[k.lower()]}' and '{k}' differ only in case"))
        tag_keys[k.lower()] = k
        if check_paths and (_padded(k) or _padded(v)):
            found.append(("$.selector.tags", f"tag '{k.strip()}' {_PADDED}: the selector compares tags exactly, "
                          "so it would select no resource"))
    if check_paths and _padded(doc.get("notify_tag")):
        found.append(("$.notify_tag", f"{_PADDED}: no resource's tag is named so, so no owner would be told"))

    rules: list[Rule] = []
    rule_ids: dict[str, int] = {}
    for i, rd in enumerate(doc["rules"]):
        path = f"$.rules[{i}]"
        if rd["id"] in rule_ids:
            found.append((f"{path}.id", f"duplicate rule id '{rd['id']}' (also $.rules[{rule_ids[rd['id']]}])"))
        rule_ids.setdefault(rd["id"], i)
        pe = rd.get("private_endpoint")
        rule = Rule(rd["id"], rd["property"], freeze(rd["expect"]), freeze(rd["action"]), rd.get("description", ""),
                    PrivateEndpointFirst(pe.get("when_missing", "notify")) if pe and pe["required"] else None,
                    bool(rd.get("allow_unlisted_property")))
        rules.append(rule)
        segments = rd["property"].count(".") + 1
        if check_paths and segments > MAX_PATH_SEGMENTS:
            # ``validate``/``sync`` only: a worker reading a row that compiles keeps deciding on it
            found.append((f"{path}.property", f"a property path of {segments} segments: at most "
                          f"{MAX_PATH_SEGMENTS} are allowed (ARM's deepest property paths have 4 or 5)"))
            continue
        if check_paths and not rule.allow_unlisted_property:
            for t in types:
                unknown = unknown_path(t, rd["property"])
                if unknown:
                    found.append((f"{path}.property", f"{unknown}: a rule on it would judge every resource "
                                  "by the absent value; if ARM does return it, set allow_unlisted_property: true"))
        if check_paths:
            # every operator compares one value: an object or an array never equals it, so the rule
            # would pass (not_equals, not_in) or fail (equals, in) every resource whatever it holds
            # (allow_unlisted_property is about paths the list lacks; these it lists as containers)
            for t in types:
                container = container_path(t, rd["property"])
                if container:
                    found.append((f"{path}.property", container))
                    break
        if len(rd["expect"]) != 1:
            found.append((f"{path}.expect", "exactly one operator expected, found "
                          + ", ".join(f"'{k}'" for k in rd["expect"])))
            continue
        if check_paths:
            found.extend(_padded_operands(path, rd))
        found.extend((f"{path}.action", m) for m in actions.build(rd["action"]).validate(rule, types))

    exemptions = _exemptions(doc, found)

    if found:
        return None, [_finding(source, doc, p, m) for p, m in found]
    policy = Policy(
        id=doc["id"],
        version=int(doc["version"]),
        description=doc["description"],
        mode=doc["mode"],
        selector=Selector(
            resource_types=tuple(types),
            subscriptions=subscriptions,
            resource_groups=resource_groups,
            tags=freeze(sel.get("tags", {})),
        ),
        rules=tuple(rules),
        exemptions=exemptions,
        notify_tag=doc.get("notify_tag", DEFAULT_NOTIFY_TAG),
        breaker=Breaker(**doc["breaker"]) if "breaker" in doc else DEFAULT_BREAKER,
        flip_flop=FlipFlop(**doc["flip_flop"]) if "flip_flop" in doc else DEFAULT_FLIP_FLOP,
        contact=doc.get("contact", ""),
        source=source,
    )
    return policy, []


_PADDED = ("has a leading or trailing space or line break (a YAML block scalar, `|` or `>`, keeps "
           "the line break; write the value on one line)")


def _padded(value: Any) -> bool:
    return isinstance(value, str) and value != value.strip()


def _padded_operands(path: str, rd: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A string operand or fixed value with surrounding whitespace: no value ARM returns has any
    (enum values, flags), so ``not_equals: "Enabled\\n"`` would pass every public resource and
    ``equals`` fail every one, the fix writing the padded value; ``validate``/``sync`` only, as
    the other rules this release added (a stored row keeps deciding as written)."""
    out = []
    for op, operand in rd["expect"].items():
        values = operand if isinstance(operand, (list, tuple)) else [operand]
        if any(_padded(v) for v in values):
            out.append((f"{path}.expect", f"'{op}' operand {_PADDED}: no ARM value would equal it"))
    if _padded(rd["action"].get("value")):
        out.append((f"{path}.action", f"value {_PADDED}: the fix would write it so"))
    return out


def _role_id(text: str, path: str, found: list[tuple[str, str]]) -> str:
    """A built-in role name (case-insensitive) or a role definition GUID, as a GUID."""
    guid = normalize_guid(text)
    if guid is not None:
        return guid
    builtin = builtin_by_name(text)
    if builtin is not None:
        return builtin.id
    names = [r.role_name for r in BUILTIN_ROLES.values()]
    found.append((path, f"role '{text}' is neither a built-in role of the catalogue nor a role definition"
                  f" GUID{_hint(text, names)}"))
    return ""


def _object_ids(values: Iterable[str], path: str, what: str, found: list[tuple[str, str]]) -> tuple[str, ...]:
    return check_schema.guid_list(values, path, what, found)     # one GUID-list check for every kind


def _scopes(values: Iterable[str], path: str, found: list[tuple[str, str]]) -> tuple[str, ...]:
    for i, scope in enumerate(values):
        problem = _check_scope(scope)
        if problem:
            found.append((f"{path}[{i}]", problem))
    return tuple(values)


def _role_semantics(source: str, doc: dict[str, Any], *,
                    check_paths: bool = True) -> tuple[RolePolicy | None, list[str]]:
    """``check_paths`` False (a worker reading rows): a repeated subscription is kept once, as in
    ``_semantics``."""
    found: list[tuple[str, str]] = []
    sel = doc.get("selector", {})
    subscriptions = _subscriptions(sel, found, refuse_repeats=check_paths)

    pr = doc.get("privileged", {})
    roles = tuple(pr.get("roles", ()))
    role_ids = [_role_id(r, f"$.privileged.roles[{i}]", found) for i, r in enumerate(roles)]
    conditional = tuple(pr.get("conditional_roles", ()))
    conditional_ids = [_role_id(r, f"$.privileged.conditional_roles[{i}]", found)
                       for i, r in enumerate(conditional)]
    for i, gid in enumerate(conditional_ids):
        if gid and gid in role_ids:
            found.append((f"$.privileged.conditional_roles[{i}]", f"role '{conditional[i]}' is also in"
                          " privileged.roles: list it in one of them"))
    privileged = PrivilegedRoles(
        roles=roles,
        custom_role_actions=tuple(pr.get("custom_role_actions", ())),
        custom_role_data_actions=tuple(pr.get("custom_role_data_actions", ())),
        conditional_roles=conditional,
        allowed_service_principals=_object_ids(pr.get("allowed_service_principals", ()),
                                               "$.privileged.allowed_service_principals",
                                               "a service principal object id", found),
        role_ids=frozenset(g for g in role_ids if g),
        conditional_role_ids=frozenset(g for g in conditional_ids if g),
    )
    break_glass = _object_ids(doc.get("break_glass", ()), "$.break_glass", "a principal object id", found)

    grants: list[RoleGrant] = []
    for i, gd in enumerate(doc.get("grants", ())):
        path = f"$.grants[{i}]"
        grant = RoleGrant(
            role=gd["role"],
            role_id=_role_id(gd["role"], f"{path}.role", found),
            scopes=_scopes(gd["scopes"], f"{path}.scopes", found),
            principals=_object_ids(gd.get("principals", ()), f"{path}.principals", "a principal object id", found),
            groups=_object_ids(gd.get("groups", ()), f"{path}.groups", "a group object id", found),
            principal_types=tuple(gd.get("principal_types", ())),
            description=gd.get("description", ""),
        )
        if not (gd.get("principals") or gd.get("groups") or gd.get("principal_types")):
            found.append((path, f"grant of '{gd['role']}' names nobody (principals, groups or principal_types):"
                          " every assignment of the role would be removed"))
        grants.append(grant)
    strict = _scopes(doc.get("strict_scopes", ()), "$.strict_scopes", found)
    exemptions = _exemptions(doc, found)
    from guardrails.policy.roles import names_role_assignment   # lazy, like the ARM id grammar

    for i, ed in enumerate(doc.get("exemptions", ())):
        if names_role_assignment(ed["scope"]):
            # a role assignment's name is a GUID its creator picks: once the exempted one is gone,
            # anyone may create an assignment (any principal, any role) under the same id
            found.append((f"$.exemptions[{i}].scope", "a role assignment id is no exemption scope: its name "
                          "can be reused by anyone once that assignment is gone; exempt the scope the "
                          "assignment is made at (a subscription, resource group or resource), or list the "
                          "principal in a grants entry (or break_glass) instead"))

    if found:
        return None, [_finding(source, doc, p, m) for p, m in found]
    policy = RolePolicy(
        id=doc["id"],
        version=int(doc["version"]),
        description=doc["description"],
        mode=doc["mode"],
        action=freeze(doc["action"]),
        selector=RoleSelector(subscriptions=subscriptions),
        privileged=privileged,
        break_glass=break_glass,
        grants=tuple(grants),
        strict_scopes=strict,
        exemptions=exemptions,
        breaker=Breaker(**doc["breaker"]) if "breaker" in doc else DEFAULT_BREAKER,
        flip_flop=FlipFlop(**doc["flip_flop"]) if "flip_flop" in doc else DEFAULT_FLIP_FLOP,
        source=source,
    )
    return policy, []
