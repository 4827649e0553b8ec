"""Event Grid custom topic publisher (decision events), over the real ``azure-eventgrid`` client.

Auth as the real topic takes it: the topic's access key (``AzureKeyCredential`` -> header
``aeg-sas-key``; a secret, from an app setting that in Azure is a Key Vault reference) or, without
a key, an Entra token from the process credential (scope ``https://eventgrid.azure.net/.default``;
the identity needs *EventGrid Data Sender* on the topic). The key never reaches a log line, an
exception message or a row: errors carry the HTTP status and Event Grid's error code only.

The SDK is imported on first send (cold start is benchmarked). Since 4.18 the public
``azure.eventgrid.EventGridPublisherClient`` builds its basic-topic client without passing
transport options on (no ``retry_total``, timeouts or ``connection_verify``), and passing them per
call makes the CloudEvent model log a warning per option; so the basic-topic client it wraps — the
same class, ``azure.eventgrid._legacy.EventGridPublisherClient`` — is built directly with them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..outbox import PublishError
from .transport import client_options

_TOPIC_SCOPE = "https://eventgrid.azure.net/.default"


def _reason(status: int | None) -> str:
    if status in (401, 403):
        return "unauthorized"
    if status == 429:
        return "throttled"
    if status is None or status >= 500 or status in (404, 408):
        return "unavailable"
    return "rejected"


class EventGridTopic:
    """Implements ``outbox.TopicSender``: one POST of a CloudEvents batch per ``send``."""

    own_permissions = ("Microsoft.EventGrid/events/send/action",)   # guardrails.permissions: the decision topic

    def __init__(self, endpoint: str, *, key: str | None = None, credential: Any = None,
                 ca_bundle: str | None = None, timeout: float = 2.0) -> None:
        if not key and credential is None:
            raise ValueError("a topic key or a token credential is required")
        self.endpoint = endpoint
        self._key = key
        self._credential = credential
        self._ca_bundle = ca_bundle
        self._timeout = timeout
        self._client = None

    def __repr__(self) -> str:       # the key stays out of every repr
        return f"EventGridTopic(endpoint={self.endpoint!r}, auth={'key' if self._key else 'token'})"

    def _get_client(self):
        if self._client is None:
            from azure.core.credentials import AzureKeyCredential
            from azure.eventgrid._legacy import EventGridPublisherClient

            credential = AzureKeyCredential(self._key) if self._key else self._credential
            kwargs = client_options(self._ca_bundle, retry_total=0, connection_timeout=self._timeout,
                                    read_timeout=self._timeout)
            self._client = EventGridPublisherClient(self.endpoint, credential, **kwargs)
        return self._client

    def send(self, events: list[dict[str, Any]]) -> None:
        from azure.core.exceptions import AzureError, HttpResponseError
        from azure.core.messaging import CloudEvent

        cloud = [CloudEvent(source=e["source"], type=e["type"], data=e.get("data"), id=e["id"],
                            subject=e.get("subject") or None, time=_parse_time(e.get("time")),
                            datacontenttype=e.get("datacontenttype")) for e in events]
        try:
            self._get_client().send(cloud)
        except HttpResponseError as exc:
            from .retry import credential_failure, no_token_text

            if credential_failure(exc):
                raise PublishError(f"decision topic: {no_token_text(exc)}", reason="unauthorized") from None
            status = exc.status_code
            code = getattr(getattr(exc, "error", None), "code", None) or ""
            raise PublishError(f"decision topic answered {status} {code}".rstrip(),
                               reason=_reason(status)) from None
        except AzureError as exc:       # connection refused, timeout, TLS
            raise PublishError(f"decision topic unreachable ({type(exc).__name__})", reason="unavailable") from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
