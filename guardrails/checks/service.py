"""The check use cases: decide, write one audit row, answer. Shared by HTTP and the CLI.

    request (validated model) + caller ─▶ policies (table, TTL cache) ─▶ identity to check
      ─▶ evaluate (pure: job.py / model_rules.py; the resource check is the event path's decision)
      ─▶ audit row (always; decision_id names it) ─▶ CheckResponse

Zero trust: no policy in force for what is asked means denied, with a reason saying so. Audit
rows: event types ``Guardrails.CheckJob``, ``Guardrails.CheckModelPromotion``,
``Guardrails.CheckResource``; allowed → ``compliant``, denied → ``violation``, a policy in
``audit`` mode that would deny → ``dry_run`` (and allowed), bad input → ``invalid``, an internal
failure → ``failed``. A remediation the caller may not ask for (403) is ``invalid`` too: a judgement
on the caller, made before anything about the resource is read, so it is never taken for the
resource's state (the report's latest decision, a ``Guardrails.Decision.*`` event). Each broken
condition is one ``violations`` entry (rule, message), under the policy that found it and with
that policy's outcome: with several model-registry policies, an ``audit``-mode policy's finding is ``dry_run`` and never a reason for a denial. Messages go
through ``safe_text`` (``redact``, then each credential-looking word described): a value that
looks like a credential is never written or answered. A name from the request (job id, zone,
model, version) is written into a subject or a message only when it does not look like a
credential (``_shown``, as ``looks_like_credential`` judges free text), else described by its
length: unquoted, ``redact`` would not see it. A job id that names a job policy in force is the
metadata's own name and is shown. A job check's row also says what was asked about (the
identity named, the zone, the secret references: pointers, never values), whatever the answer,
a ``failed`` one included; the reasons are cut before that part or the caller would be (the audit
sink keeps ``MESSAGE_CHARS`` of a message). An identity Graph does not hold (404) is a member of no
group: the identity checked is denied (``identity``, not in the directory), a caller gets no grant.

The resource check does not take role-definition ids: a custom role is judged through its
assignments, each at its own scope (the event path re-judges them all when a definition changes),
so a remediate grant limited to a scope could otherwise act far beyond it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from guardrails.checks import access
from guardrails.checks.job import GroupResolver, JobFinding, JobRequest, evaluate_job
from guardrails.checks.models import CheckResponse, JobCheckRequest, ModelPromotionRequest, Reason, ResourceCheckRequest
from guardrails.checks.policies import SecretReference
from guardrails.checks.principal import Principal
from guardrails.errors import FORBIDDEN, UNAUTHENTICATED, InvalidArmId
from guardrails.model.arm_id import parse_arm_id
from guardrails.model.decision import Actor, AuditRow, ViolationRecord, short_repr
from guardrails.model.roles import ROLE_DEFINITION_TYPE
from guardrails.policy.model_rules import evaluate_promotion
from guardrails.policy.roles import PrincipalNotFound
from guardrails.secrets.credentials import looks_like_credential, safe_text

EVENT_TYPES = {"job": "Guardrails.CheckJob", "model-promotion": "Guardrails.CheckModelPromotion",
               "resource": "Guardrails.CheckResource"}
# resource-check failures that mean "ARM could not be asked", not "the resource is wrong"
# (``busy``: another decision held the resource's lock for the whole time budget)
# no answer could be made: a dependency did not answer, or refused the guardrails' own identity. A fix
# refused by a lock or an Azure Policy deny (``scope_locked`` / ``policy_denied``, remediate only)
# is an answer: not allowed, the refused fix among the reasons (asking again changes nothing)
UNAVAILABLE_REASONS = frozenset({"throttled", "transient", "arm_error", "busy", FORBIDDEN, UNAUTHENTICATED})
_FIELDS = {"identity": "identity", "allowed-identity": "identity", "access-group": "identity", "role": "role",
           "permissions": "permissions", "secret-references": "secret_references", "network-zone": "network_zone",
           "job-policy": "job_id"}
REMEDIATE_NOT_PERMITTED = "remediate-not-permitted"
MESSAGE_CHARS = 2000        # what the audit sink keeps of a message (adapters/audit_tables)


@dataclass(frozen=True)
class Finding:
    """A broken condition with the policy that found it (``ref``, "" when none) and that policy's
    ``mode``: ``audit`` → ``dry_run``, allowed; anything else denies."""

    rule: str
    message: str
    policy: str
    mode: str

    @property
    def denies(self) -> bool:
        return self.mode != "audit"


def _attribute(findings: list[JobFinding], policy: str, mode: str) -> list[Finding]:
    return [Finding(f.rule, f.message, policy, mode) for f in findings]


class _Directory:
    """``groups`` as one check reads them: a principal Graph does not hold (404,
    ``PrincipalNotFound``) is a member of no group, and ``missing`` names it. Graph answered, so
    the check answers (fail-closed: no grant, no membership) rather than asking for a retry that
    would get the same 404; a just-created identity may take minutes to replicate, and the
    denial says so. Any other Graph fault still raises (503)."""

    def __init__(self, groups: GroupResolver) -> None:
        self._groups = groups
        self.missing: set[str] = set()

    def is_member(self, principal_id: str, group_id: str) -> bool:
        try:
            return self._groups.is_member(principal_id, group_id)
        except PrincipalNotFound:
            self.missing.add(principal_id.lower())
            return False


class CheckUnavailable(Exception):
    """The check was audited ``failed`` because a dependency could not answer: HTTP 503."""

    def __init__(self, reason: str, decision_id: str) -> None:
        super().__init__(reason)
        self.reason, self.decision_id = reason, decision_id


@dataclass(frozen=True)
class Caller:
    """Who asks. ``principal`` is App Service authentication's verified identity (None when the
    platform gave none). ``trusted`` (the CLI, run with the deployment's own credentials) may
    name any identity and remediate."""

    principal: Principal | None = None
    trusted: bool = False
    correlation_id: str = ""

    @property
    def object_id(self) -> str | None:
        return self.principal.object_id if self.principal else None

    @property
    def actor(self) -> Actor:
        p = self.principal
        return Actor(object_id=p.object_id, app_id=p.app_id, upn=p.upn) if p else Actor()

    def describe(self) -> str:
        if self.trusted:
            return f"cli as {self.principal}" if self.principal else "cli"
        return str(self.principal) if self.principal else "caller without a verified identity"


@dataclass
class Outcome:
    response: CheckResponse
    status: int = 200


class CheckService:
    def __init__(self, service, *, groups: GroupResolver, trust_principal_header: bool = False,
                 clock: Callable[[], float] = time.perf_counter,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.service = service            # GuardrailsService: policies (cached), audit sink, check_resource
        self.groups = groups
        # App Service authentication runs in front of the app (see principal.platform_auth_enabled)
        self.trust_principal_header = trust_principal_header
        self._clock, self._wall = clock, wall_clock

    # ---------------------------------------------------------------- jobs
    def check_job(self, req: JobCheckRequest, caller: Caller, decision_id: str) -> Outcome:
        start = self._clock()
        compiled = self.service.policies.get()
        job_id = str(req.job_id).strip()
        named = _named(req)
        asked = _asked(req, named)
        policies = compiled.checks.job(job_id)
        job = job_id if policies else _shown(job_id, "a job id")      # a policy in force names it
        subject = f"job:{job}"
        if len(policies) != 1:
            why = (f"no job policy in force for job {job}: nothing is allowed by default" if not policies else
                   f"job {job} has {len(policies)} policies in force ({', '.join(p.ref for p in policies)}): ambiguous")
            return self._answer("job", subject, decision_id, caller, start, [p.ref for p in policies],
                                [Finding("job-policy", why, "", "enforce")], asked=asked)
        policy = policies[0]
        directory = _Directory(self.groups)
        identity, problem, grant = self._identity(compiled, caller, named, "job", directory)
        request = JobRequest(job_id=job_id, network_zone=req.network_zone, permissions=tuple(req.permissions),
                             secret_references=tuple(SecretReference(s.vault, s.secret) for s in req.secret_references),
                             role=req.role)
        # no verified identity (or an on-behalf request nobody granted) always denies: audit mode
        # trials a policy's conditions, never who is asking
        found = evaluate_job(policy, request, identity=identity, groups=directory)
        if identity is not None and identity.lower() in directory.missing:
            # not "not a member" of this or that group: there is no such identity to run the job
            found = [f for f in found if f.rule not in ("allowed-identity", "access-group")] + [JobFinding(
                "identity", f"identity {identity} is not in the directory (Graph answered 404: deleted, mistyped,"
                " or created minutes ago and not yet replicated)")]
        findings = (_attribute([problem], policy.ref, "enforce") if problem else []) + _attribute(
            found, policy.ref, policy.mode)
        refs = [policy.ref] + ([grant] if grant else [])
        ok = f"job {job} may run as {identity} from {_shown(req.network_zone, 'a zone')}"
        return self._answer("job", subject, decision_id, caller, start, refs, findings, allowed_message=ok,
                            asked=asked)

    def _identity(self, compiled, caller: Caller, named: str | None, check: str, directory: _Directory):
        """(identity to check, finding when there is none, on-behalf grant ref)."""
        own = caller.object_id
        if named is None or named == own:
            if own is None:
                why = ("no identity named" if caller.trusted else "no verified caller identity (App Service"
                       " authentication sent no X-MS-CLIENT-PRINCIPAL) and no identity named")
                return None, JobFinding("identity", why), None
            return own, None, None
        if caller.trusted:
            return named, None, None
        grant = access.on_behalf_grant(compiled.check_access_policies, own, check, directory)
        if grant is None:
            unknown = " (the caller is not in the directory: Graph answered 404)" if own in directory.missing else ""
            return None, JobFinding("identity", f"{caller.describe()} may not check on behalf of {named}"
                                    f" (no check-access on_behalf grant covers this caller){unknown}"), None
        return named, None, grant.ref

    # ---------------------------------------------------------------- model promotion
    def check_model_promotion(self, req: ModelPromotionRequest, caller: Caller, decision_id: str) -> Outcome:
        start = self._clock()
        policies = self.service.policies.get().model_registry_policies
        model, version = _shown(req.model, "a model name"), _shown(str(req.version), "a version")
        subject = _model_subject(req)
        if not policies:
            return self._answer("model-promotion", subject, decision_id, caller, start, [], [Finding(
                "model-registry-policy", "no model-registry policy in force: nothing is allowed by default",
                "", "enforce")])
        findings: list[Finding] = []
        for p in policies:          # each finding stays with the policy (and mode) that found it
            found = evaluate_promotion(p.rules, version=req.version, from_stage=req.from_stage,
                                       to_stage=req.to_stage, tags=req.tags)
            findings.extend(Finding(f.rule, f.message, p.ref, p.mode) for f in found)
        ok = f"{model} version {version} may move to {_shown(req.to_stage, 'a stage')}"
        return self._answer("model-promotion", subject, decision_id, caller, start, [p.ref for p in policies],
                            findings, allowed_message=ok)

    # ---------------------------------------------------------------- resources
    def check_resource(self, resource_id: str, *, remediate: bool, caller: Caller, decision_id: str) -> Outcome:
        """Raises ``InvalidArmId`` for a bad id and for a role definition's (before anything is
        read or written)."""
        start = self._clock()
        rid = parse_arm_id(resource_id)
        if rid.resource_type.lower() == ROLE_DEFINITION_TYPE.lower():
            raise InvalidArmId("a role definition is not checked on demand: it is judged through its assignments,"
                               " each at its own scope; check a role assignment id"
                               " (.../providers/Microsoft.Authorization/roleAssignments/<id>)")
        if remediate and not caller.trusted:
            compiled = self.service.policies.get()
            directory = _Directory(self.groups)
            grant = access.remediate_grant(compiled.check_access_policies, caller.object_id, rid, directory)
            if grant is None:
                unknown = " (the caller is not in the directory: Graph answered 404)" if (
                    caller.object_id in directory.missing) else ""
                why = safe_text(f"{caller.describe()} may not ask for remediation of this resource (no check-access"
                                f" remediate grant covers caller and scope){unknown}")
                # a judgement on the caller, not on the resource (nothing of it was read): ``invalid``,
                # which neither the report nor the decision events take for the resource's state
                self.record("resource", decision_id, caller, verdict="invalid", reason=REMEDIATE_NOT_PERMITTED,
                            message=why, subject=str(rid), start=start)
                return Outcome(CheckResponse(allowed=False, reasons=[Reason(rule=REMEDIATE_NOT_PERMITTED, message=why)],
                                             policy_version=None, decision_id=decision_id, verdict="invalid",
                                             subject=str(rid)), status=403)
        row = self.service.check_resource(str(rid), remediate=remediate, actor=caller.actor, decision_id=decision_id,
                                          correlation_id=caller.correlation_id, said_by=caller.describe())
        if row.verdict == "failed" and row.reason in UNAVAILABLE_REASONS:
            raise CheckUnavailable(row.reason, decision_id)
        reasons = [Reason(rule=f"{v.policy.split('@')[0]}/{v.rule}", message=safe_text(_describe(v, remediate)))
                   for v in row.violations]
        if not reasons and row.verdict not in ("compliant", "remediated"):
            reasons = [Reason(rule=row.reason or row.verdict, message=safe_text(row.message or row.verdict))]
        return Outcome(CheckResponse(allowed=self._resource_allowed(row), reasons=reasons,
                                     policy_version=", ".join(row.policies) or None, decision_id=decision_id,
                                     verdict=row.verdict, subject=str(rid)))

    def _resource_allowed(self, row) -> bool:
        """Compliant or put right; or ``dry_run`` only because the policies that would deny are in
        ``audit`` mode (as the job and model-promotion checks answer, and the README says). A
        ``dry_run`` of an enforcing policy (asked without ``remediate``, or held by an open circuit
        breaker) still denies."""
        if row.verdict in ("compliant", "remediated"):
            return True
        if row.verdict != "dry_run":
            return False
        modes = {getattr(p, "ref", ""): p.mode for p in self.service.policies.get().all_policies}
        open_ = [v for v in row.violations if v.outcome not in ("exempted", "remediated", "shadow")]
        return bool(open_) and all(v.outcome == "dry_run" and modes.get(v.policy) == "audit" for v in open_)

    # ---------------------------------------------------------------- audit
    def _answer(self, check: str, subject: str, decision_id: str, caller: Caller, start: float, refs: list[str],
                findings: list[Finding], *, allowed_message: str = "", asked: str = "") -> Outcome:
        """Denied when a finding's policy enforces; ``dry_run`` (allowed) when every finding is an
        ``audit``-mode policy's. A denial's reasons are the enforcing findings only; the audit
        row keeps every finding, each under its own policy and outcome. ``asked``: what the
        request asked about (a job check: the identity, zone and secret references, never a
        value), on the row's message whatever the answer."""
        findings = [Finding(f.rule, safe_text(f.message), f.policy, f.mode) for f in findings]
        denying = [f for f in findings if f.denies]
        if not findings:
            verdict, allowed, reasons = "compliant", True, []
        elif not denying:
            verdict, allowed, reasons = "dry_run", True, findings
        else:
            verdict, allowed, reasons = "violation", False, denying
        row = AuditRow(event_id=decision_id, event_type=EVENT_TYPES[check], resource_id=subject, verdict=verdict,
                       delivery_id=decision_id, actor=caller.actor, correlation_id=caller.correlation_id[:128],
                       policies=refs,
                       violations=[ViolationRecord(policy=f.policy, rule=f.rule, property=_FIELDS.get(f.rule, f.rule),
                                                   before=None, after=None,
                                                   outcome="violation" if f.denies else "dry_run",
                                                   message=f.message[:300]) for f in findings])
        row.reason = reasons[0].rule if reasons else ""
        said = "; ".join(f.message for f in reasons) if reasons else allowed_message
        row.message = _message(said, caller, asked)
        self._write(row, start)
        return Outcome(CheckResponse(allowed=allowed, reasons=[Reason(rule=f.rule, message=f.message) for f in reasons],
                                     policy_version=", ".join(refs) or None, decision_id=decision_id, verdict=verdict,
                                     subject=subject))

    def record(self, check: str, decision_id: str, caller: Caller, *, verdict: str, reason: str, message: str,
               subject: str = "", asked: str = "", start: float | None = None) -> None:
        """The audit row of an answer that is not a decision: bad input or a refused request
        (``invalid``) or an internal failure (``failed``). Raises ``StoreError`` when the audit
        table is down."""
        row = AuditRow(event_id=decision_id, event_type=EVENT_TYPES.get(check, "Guardrails.Check"),
                       resource_id=subject[:2048], verdict=verdict, reason=reason, delivery_id=decision_id,
                       actor=caller.actor, correlation_id=caller.correlation_id[:128])
        row.message = _message(safe_text(message), caller, asked)
        self._write(row, self._clock() if start is None else start)

    def record_failure(self, check: str, decision_id: str, caller: Caller, *, reason: str,
                       request: object = None) -> None:
        """The ``failed`` row of a check a dependency (or a fault) kept from an answer. Once the
        request was validated (``request``) the row is under what it was about, as a decided row
        is (``job:<id>``, ``model:…``, the ARM id), and a job check's message says what was asked.
        Raises ``StoreError`` when the audit table is down (the HTTP API and the CLI call it
        through ``api.record_failure``, which never raises)."""
        subject, asked = _about(request)
        self.record(check, decision_id, caller, verdict="failed", reason=reason,
                    message="the check could not be answered", subject=subject, asked=asked)

    def _write(self, row: AuditRow, start: float) -> None:
        row.time = self._wall().astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        row.duration_ms = round((self._clock() - start) * 1000.0, 3)
        self.service.audit.write(row)
        publisher = getattr(self.service, "publisher", None)
        if publisher is not None:   # a denied pre-flight check is a decision too (never raises)
            publisher.publish(row)


def _named(req: JobCheckRequest) -> str | None:
    """The identity a job check names in its body (lower case), None for the caller's own."""
    return req.identity.object_id.lower() if req.identity else None


def _model_subject(req: ModelPromotionRequest) -> str:
    return f"model:{_shown(req.model, 'a model name')}/versions/{_shown(str(req.version), 'a version')}"


def _about(request: object) -> tuple[str, str]:
    """(subject, what was asked) of a validated request answered without a decision; ("", "")
    before one validated. A job id is shown unless it looks like a credential (whether a policy in
    force names it is not known when the policy table did not answer)."""
    if isinstance(request, JobCheckRequest):
        return f"job:{_shown(str(request.job_id).strip(), 'a job id')}", _asked(request, _named(request))
    if isinstance(request, ModelPromotionRequest):
        return _model_subject(request), ""
    if isinstance(request, ResourceCheckRequest):
        try:
            return str(parse_arm_id(request.resource_id)), ""
        except InvalidArmId:
            return "", ""
    return "", ""


def _message(said: str, caller: Caller, asked: str = "") -> str:
    """A check row's message: what was said, then what was asked and who asked (the CLI's rows
    end ``[cli as …]``). The audit sink keeps ``MESSAGE_CHARS``: a long denial's reasons are cut
    to fit, never the asked part nor the caller."""
    tail = (f" ({asked})" if asked else "") + f" [{caller.describe()[:300]}]"
    room = MESSAGE_CHARS - len(tail)
    return (said if len(said) <= room else said[:room - 3] + "...") + tail


def _asked(req: JobCheckRequest, named: str | None) -> str:
    """What a job check asked about, for its audit row: the identity named in the body (else the
    caller's own, which the row's actor holds), the zone and the secret references (pointers; a
    request holding a credential-looking string was refused before it got here)."""
    refs = ", ".join(f"{_shown(s.vault)}/{_shown(s.secret)}" for s in req.secret_references) or "none"
    who = f"identity {named}" if named else "identity: the caller's own"
    return f"asked: {who}; zone {_shown(req.network_zone)}; secret references: {refs}"[:600]


def _shown(text: str, what: str = "") -> str:
    """A name from the request as a subject, an answer, an audit row or a log may hold it: itself,
    or described (never quoted, never a part of it) when it looks like a credential. A name
    field admits a long opaque run (``credential_fields`` refuses only known formats, so that a
    long snake_case name is a name); written unquoted, ``redact`` would not see it."""
    if not looks_like_credential(text):
        return text
    return f"<{what} of {len(text)} characters, not shown: it looks like a credential>" if what else \
        "<not shown: it looks like a credential>"


def _describe(v: ViolationRecord, remediate: bool) -> str:
    head = f"{v.property} is {short_repr(v.before)}"
    if v.after is not None:
        head += f", policy wants {short_repr(v.after)}"
    if v.outcome == "dry_run" and (v.message or "").startswith("audit mode: would notify"):
        return f"{head}: {v.message} (dry_run)"[:600]
    if v.outcome == "dry_run" and not remediate:
        return f"{head} (not fixed: checked without remediate)"
    return f"{head}: {v.message or v.outcome} ({v.outcome})"[:600]
