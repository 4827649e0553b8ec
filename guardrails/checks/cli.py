"""``python -m guardrails check job|resource|model-promotion`` — the HTTP checks for a pipeline
without HTTP access. Same models, same policies (the policy table), same audit rows.

The CLI runs with the deployment's own credentials (it reads the policy table and writes the
audit table directly), so it is a trusted caller: it names the identity a job check is about and
may remediate. Prints the ``CheckResponse`` JSON. Exit 0 allowed, 1 denied, 2 error.

What it refuses, it refuses as the HTTP API does and says no more than the API would answer: a
credential where a name belongs (``credential_fields``, the resource id too) is named by its field
only; a validation error's location goes through ``api._field`` (a tag key may be the pasted key)
and every error text through ``api._safe_text``; an argument that looks like a credential is
described, never quoted (``_quoted``). A ``--tag`` key given twice is refused (``malformed_json``,
as the API refuses a key sent twice), never "last one wins". A check Table Storage, ARM or Graph
kept from an answer is one ``failed`` row, as over HTTP (``api.record_failure``).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

from pydantic import ValidationError


def add_parser(sub) -> None:
    ck = sub.add_parser("check", help="pre-flight checks, as POST /api/checks/... (exit 0 allowed, 1 denied, 2 error)")
    cksub = ck.add_subparsers(dest="action", required=True)
    j = cksub.add_parser("job", help="may this job start?")
    j.add_argument("--job-id", required=True)
    j.add_argument("--identity", required=True, metavar="OBJECT_ID", help="object id of the identity that will run it")
    j.add_argument("--zone", required=True, help="network zone it runs from")
    j.add_argument("--permission", action="append", required=True, help="a permission it uses (repeat)")
    j.add_argument("--secret", action="append", default=[], metavar="VAULT/SECRET", help="a Key Vault reference (repeat)")
    j.add_argument("--role")
    r = cksub.add_parser("resource", help="the guardrail's decision on the live resource")
    r.add_argument("resource_id")
    r.add_argument("--remediate", action="store_true", help="apply the fixes")
    m = cksub.add_parser("model-promotion", help="may this model version move to the stage?")
    m.add_argument("--model", required=True)
    m.add_argument("--version", required=True)
    m.add_argument("--from-stage")
    m.add_argument("--to-stage", required=True)
    m.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="a tag of the version (repeat)")


def _quoted(text: str) -> str:
    from guardrails.secrets.credentials import looks_like_credential

    return "<a value that looks like a credential, not shown>" if looks_like_credential(text) else repr(text[:60])


def _secret(text: str) -> dict[str, str]:
    vault, sep, secret = text.partition("/")
    if not sep:
        raise ValueError(f"--secret {_quoted(text)}: expected VAULT/SECRET")
    return {"vault": vault, "secret": secret}


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--tag {_quoted(text)}: expected KEY=VALUE")
    return key, value


class _GivenTwice(ValueError):
    """A tag key given twice: the API's ``malformed_json`` for a key sent twice."""

    code = "malformed_json"


def _tags(texts: list[str]) -> dict[str, str]:
    """The ``--tag`` options as the body's ``tags``, refused as the API refuses a key sent twice
    (``api.reject_duplicates``): keeping the last would check something else than was given."""
    from guardrails.checks.api import DuplicateKey, reject_duplicates, shown_key

    try:
        return reject_duplicates([_tag(t) for t in texts])
    except DuplicateKey as dup:
        raise _GivenTwice(f"--tag '{shown_key(dup.key)}' given twice: give each tag once") from None


def _acting_as():
    """The identity the CLI acts as (its credential's ARM token: an operator's ``az login``, a
    pipeline's managed identity), so its audit rows name who ran the check. A check still runs
    when no token can be had; its rows then name no one."""
    from azure.core.exceptions import AzureError, ClientAuthenticationError

    from guardrails.adapters.arm import build_credential
    from guardrails.bootstrap import get_service
    from guardrails.checks.principal import principal_from_token

    settings = get_service().settings
    try:
        token = build_credential(settings).get_token(settings.arm_endpoint + "/.default").token
    except (ClientAuthenticationError, AzureError, OSError, ValueError) as exc:
        print(f"warning: no token from the credential ({type(exc).__name__}); the audit rows name no actor",
              file=sys.stderr)
        return None
    return principal_from_token(token)


def _no_credentials(fields: list[str]) -> None:
    """As the HTTP API: a credential where a name belongs is refused, named by its field only."""
    if fields:
        raise ValueError(f"{', '.join(fields[:5])}: looks like a credential; give the Key Vault secret's name,"
                         " never its value")


def _invalid_code(exc: Exception) -> str:
    """The code the HTTP API answers for the same input (``api.validation_error``)."""
    if isinstance(exc, ValidationError):
        from guardrails.checks.api import validation_error
        return validation_error(exc).code
    return getattr(exc, "code", "invalid_value")


def _record_invalid(check: str, decision_id: str, caller, code: str, shown: str) -> None:
    """Bad input is one ``invalid`` row, as over HTTP (``shown``: the text already cleared of
    anything credential-looking). An audit store that does not answer is said, never hidden."""
    from guardrails.bootstrap import get_checks
    from guardrails.errors import GuardrailsError

    try:
        get_checks().record(check, decision_id, caller, verdict="invalid", reason=code, message=shown[:500])
    except GuardrailsError as exc:
        print(f"error: the audit store did not answer ({exc.reason}): this rejection is not recorded",
              file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    from guardrails.bootstrap import get_checks
    from guardrails.checks.api import _field, _safe_text, record_failure
    from guardrails.checks.models import (
        JobCheckRequest, ModelPromotionRequest, ResourceCheckRequest, credential_fields,
    )
    from guardrails.checks.service import Caller, CheckUnavailable
    from guardrails.errors import GuardrailsError, InvalidArmId

    caller = Caller(principal=_acting_as(), trusted=True, correlation_id="cli")
    decision_id = uuid.uuid4().hex
    req = None                  # what a failure row is about, once validated
    try:
        if args.action == "job":
            req = JobCheckRequest.model_validate({
                "job_id": args.job_id, "identity": {"object_id": args.identity}, "network_zone": args.zone,
                "permissions": args.permission, "secret_references": [_secret(s) for s in args.secret],
                **({"role": args.role} if args.role else {})})
            _no_credentials(credential_fields(req))
            outcome = get_checks().check_job(req, caller, decision_id)
        elif args.action == "model-promotion":
            req = ModelPromotionRequest.model_validate({
                "model": args.model, "version": args.version, "to_stage": args.to_stage,
                "tags": _tags(args.tag),
                **({"from_stage": args.from_stage} if args.from_stage else {})})
            _no_credentials(credential_fields(req))
            outcome = get_checks().check_model_promotion(req, caller, decision_id)
        else:
            req = ResourceCheckRequest.model_validate({"resource_id": args.resource_id})
            _no_credentials(credential_fields(req))
            outcome = get_checks().check_resource(req.resource_id, remediate=args.remediate, caller=caller,
                                                  decision_id=decision_id)
    except (ValidationError, ValueError) as exc:
        errors = exc.errors(include_url=False, include_input=False) if isinstance(exc, ValidationError) else None
        detail = "; ".join(f"{_field(tuple(e['loc']))}: {e['msg']}" for e in errors) if errors else str(exc)
        shown = _safe_text(detail, "a value in the request looks like a credential (not shown)")
        print(f"error: invalid check request: {shown[:500]}", file=sys.stderr)
        _record_invalid(args.action, decision_id, caller, _invalid_code(exc), shown)
        return 2
    except CheckUnavailable as exc:
        print(f"error: a dependency did not answer ({exc.reason}); decision {exc.decision_id} audited as failed",
              file=sys.stderr)
        return 2
    except GuardrailsError as exc:            # bad ARM id, Table Storage / ARM / Graph unavailable
        code = "invalid_resource_id" if isinstance(exc, InvalidArmId) else type(exc).__name__
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        shown = _safe_text(text, f"{code}: a value in the request looks like a credential (not shown)")
        print(f"error: {shown}", file=sys.stderr)
        if isinstance(exc, InvalidArmId):     # bad input, audited as over HTTP; a dependency's failure is not input
            _record_invalid(args.action, decision_id, caller, code, shown)
        elif not record_failure(get_checks, args.action, decision_id, caller, exc.reason, req):
            print("error: this failure could not be written to the audit table (see the log)", file=sys.stderr)
        return 2
    print(json.dumps(outcome.response.model_dump(), indent=2))
    return 0 if outcome.response.allowed else 1
