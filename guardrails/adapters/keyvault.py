"""Key Vault data plane through ``azure-keyvault-secrets`` / ``azure-keyvault-keys``, and storage
account keys through ARM (``listKeys`` / ``regenerateKey`` actions on the generic ARM client).

Vault URLs come from a template setting (``https://{vault}.vault.azure.net`` in Azure; the local
emulator's address in tests), so events naming ``https://<vault>.vault.azure.net/...`` reach the
right endpoint. Secret values are wrapped in ``Redacted`` the moment the SDK hands them over.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import quote

from ..errors import FORBIDDEN, ArmError
from ..secrets.values import SECRET_DISABLED, KeyVersion, Redacted, SecretVersion, newest_versions
from .retry import BudgetedCaller
from .transport import client_options


# how much earlier than the first attempt Key Vault's clock may date a version that attempt made
LANDED_SKEW = timedelta(seconds=30)
# a 403 for the caller's network path (public access disabled, or the vault's firewall): no role
# helps; any other 403 refusing the caller is ``errors.FORBIDDEN`` (a missing role or access policy)
NETWORK_FORBIDDEN = "network_forbidden"
_NETWORK_CODES = frozenset({"forbiddenbyconnection", "forbiddenbyfirewall"})


def _network(cause: BaseException | None) -> bool:
    """Whether Key Vault's 403 refuses the caller's network path (``innererror.code``
    ``ForbiddenByConnection`` / ``ForbiddenByFirewall``, or its "Public network access is
    disabled" sentence) rather than its identity."""
    error = getattr(cause, "error", None)
    inner = getattr(error, "innererror", None) or {}
    code = str(inner.get("code") or "") if isinstance(inner, dict) else ""
    message = str(getattr(error, "message", "") or "").lower()
    return code.lower() in _NETWORK_CODES or "public network access is disabled" in message


def _disabled(cause: BaseException | None) -> bool:
    """Whether Key Vault's 403 says the object is disabled (``innererror.code`` ``SecretDisabled`` /
    ``KeyDisabled``), rather than that the caller may not do it."""
    error = getattr(cause, "error", None)
    inner = getattr(error, "innererror", None) or {}
    codes = [str(inner.get("code") or "") if isinstance(inner, dict) else "", str(getattr(error, "code", "") or "")]
    message = str(getattr(error, "message", "") or "").lower()
    # exact codes, and Key Vault's own sentence: a firewall 403 ("Public network access is
    # disabled …") or a name containing "disabled" is a missing permission, never a disabled object
    return (any(c.lower() in _DISABLED_CODES for c in codes)
            or any(f"on a disabled {kind}" in message for kind in ("secret", "key", "certificate")))


_DISABLED_CODES = frozenset({"secretdisabled", "keydisabled", "certificatedisabled"})


class KeyVaultGateway:
    data_permissions = (   # guardrails.permissions: on each governed vault (RBAC authorization)
        "Microsoft.KeyVault/vaults/secrets/getSecret/action", "Microsoft.KeyVault/vaults/secrets/setSecret/action",
        "Microsoft.KeyVault/vaults/secrets/readMetadata/action", "Microsoft.KeyVault/vaults/secrets/update/action",
        "Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/rotate/action",
        "Microsoft.KeyVault/vaults/keys/update/action")

    def __init__(self, credential, *, url_template: str, verify_challenge_resource: bool = True,
                 ca_bundle: str | None = None, timeout: float = 10.0, caller: BudgetedCaller | None = None) -> None:
        self._credential = credential
        self._template = url_template
        self._verify = verify_challenge_resource
        self._ca = ca_bundle
        self._caller = caller or BudgetedCaller(timeout=timeout)
        self._secrets: dict[str, Any] = {}
        self._keys: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return self._caller.calls

    def vault_url(self, vault: str) -> str:
        return self._template.format(vault=vault.lower())

    def _kwargs(self) -> dict[str, Any]:
        return client_options(self._ca, verify_challenge_resource=self._verify, retry_total=0)

    def _secret_client(self, vault: str):
        with self._lock:
            client = self._secrets.get(vault.lower())
            if client is None:
                from azure.keyvault.secrets import SecretClient
                client = SecretClient(vault_url=self.vault_url(vault), credential=self._credential, **self._kwargs())
                self._secrets[vault.lower()] = client
            return client

    def _key_client(self, vault: str):
        with self._lock:
            client = self._keys.get(vault.lower())
            if client is None:
                from azure.keyvault.keys import KeyClient
                client = KeyClient(vault_url=self.vault_url(vault), credential=self._credential, **self._kwargs())
                self._keys[vault.lower()] = client
            return client

    def _call(self, fn: Callable[[], Any], *, deadline: float | None, what: str) -> Any:
        try:
            return self._caller.call(fn, deadline=deadline, what=what)
        except ArmError as exc:
            if exc.status == 403 and exc.reason in (ArmError.reason, FORBIDDEN):
                # not transient: a disabled version (its value cannot be read) or a missing role
                exc.reason = (SECRET_DISABLED if _disabled(exc.__cause__)
                              else NETWORK_FORBIDDEN if _network(exc.__cause__) else FORBIDDEN)
            raise

    @staticmethod
    def _version(vault: str, props, value: str | None = None) -> SecretVersion:
        return SecretVersion(vault=vault, name=props.name, version=props.version, enabled=bool(props.enabled),
                             expires_on=props.expires_on, not_before=props.not_before, created_on=props.created_on,
                             tags=dict(props.tags or {}), content_type=props.content_type,
                             value=Redacted(value) if value is not None else None,
                             managed=bool(getattr(props, "managed", None)))

    # -- secrets -------------------------------------------------------------------------
    def get_secret(self, vault: str, name: str, *, version: str | None = None, with_value: bool = False,
                   deadline: float | None = None) -> SecretVersion:
        client = self._secret_client(vault)
        secret = self._call(lambda: client.get_secret(name, version, read_timeout=self._caller.timeout_for(deadline)),
                            deadline=deadline, what=f"GET secret {vault}/{name}")
        return self._version(vault, secret.properties, secret.value if with_value else None)

    def get_properties(self, vault: str, name: str, *, version: str | None = None, current_disabled: bool = False,
                       prefer: str | None = None, deadline: float | None = None) -> SecretVersion:
        """A version's properties (enabled, expiry, created, tags; never the value) from the list of
        versions, which Key Vault answers for a disabled version too (a GET of a disabled version is
        403 SecretDisabled). ``version`` None: the current version, the newest one.

        Key Vault lists versions in no documented order (a real answer is sorted by version id) and
        ``created`` has whole seconds, so two versions of one second cannot be told apart by the
        list alone. ``current_disabled`` (the versionless GET answered 403 SecretDisabled): the
        current version is a disabled one, so only disabled versions are candidates; among the
        newest candidates, ``prefer`` (the version an event names) wins a tie."""
        if version is not None:
            found = self._find_version(vault, name, version, deadline=deadline)
        else:
            versions = self.list_versions(vault, name, deadline=deadline)
            pool = [v for v in versions if not v.enabled] if current_disabled else list(versions)
            tied = newest_versions(pool or versions)
            found = next((v for v in tied if prefer and v.version.lower() == prefer.lower()),
                         tied[-1] if tied else None)
        if found is None:
            from ..errors import ResourceNotFound
            raise ResourceNotFound(f"GET secret {vault}/{name}: not found", status=404)
        return found

    def set_secret(self, vault: str, name: str, value: Redacted, *, tags: dict[str, str],
                   expires_on: datetime | None, content_type: str | None, deadline: float | None = None) -> SecretVersion:
        """One new version. Key Vault makes a version per PUT, so the write is not idempotent: an
        attempt whose answer was lost (a read timeout, a dropped connection, a 5xx) may have landed,
        and sending it again would leave a second new version nobody audited. Before it is sent
        again, the versions are listed and one that carries exactly this write's tags, expiry and
        content type, created since the first attempt (less ``LANDED_SKEW`` for the clocks), is
        taken as the write's own. (An attempt still in flight when the retry lists is not seen.)"""
        client = self._secret_client(vault)
        first: list[datetime] = []            # when the first attempt was sent

        def attempt():
            if first:
                landed = self._landed(client, name, tags, expires_on, content_type, first[0], deadline)
                if landed is not None:
                    return landed
            else:
                first.append(datetime.now(timezone.utc))
            return client.set_secret(name, value.reveal(), tags=tags, expires_on=expires_on,
                                     content_type=content_type, enabled=True,
                                     read_timeout=self._caller.timeout_for(deadline)).properties

        return self._version(vault, self._call(attempt, deadline=deadline, what=f"SET secret {vault}/{name}"))

    def _landed(self, client, name: str, tags: dict[str, str], expires_on: datetime | None,
                content_type: str | None, since: datetime, deadline: float | None):
        """The version an earlier attempt of this write made, if it is there (newest first)."""
        def secs(when: datetime | None) -> int | None:
            return None if when is None else int(when.timestamp())

        floor = since - LANDED_SKEW
        found = [p for p in client.list_properties_of_secret_versions(name, read_timeout=self._caller.timeout_for(deadline))
                 if p.created_on is not None and p.created_on >= floor and dict(p.tags or {}) == dict(tags)
                 and secs(p.expires_on) == secs(expires_on) and (p.content_type or None) == (content_type or None)
                 and p.enabled]
        return max(found, key=lambda p: p.created_on) if found else None

    def list_secrets(self, vault: str, *, deadline: float | None = None,
                     go_on: Callable[[], bool] | None = None) -> list[SecretVersion]:
        """The vault's secrets as listed (current versions' properties: no value, no version id).

        Read page by page (Key Vault answers 25 to a page), each page one retried call from the
        previous page's continuation token: a 429 on page 61 resends page 61 only, never pages
        1-60 (a whole-list retry would answer throttling with more load). Every page's retries
        are bounded by the same ``deadline``. ``go_on`` (the sweep's own deadline on its own clock)
        is asked before every page after the first: False ends the list, ``ArmTransient`` (a run
        whose budget is spent does not read the rest of an 80-page vault)."""
        client = self._secret_client(vault)

        def page(token: str | None):
            pages = client.list_properties_of_secrets(
                read_timeout=self._caller.timeout_for(deadline)).by_page(continuation_token=token)
            items = list(next(pages))
            return items, pages.continuation_token

        props: list = []
        token: str | None = None
        number = 0
        while True:
            number += 1
            if number > 1 and go_on is not None and not go_on():
                from ..errors import ArmTransient
                raise ArmTransient(f"LIST secrets {vault}: the caller's budget ended after {number - 1} page(s)")
            items, token = self._call(lambda t=token: page(t), deadline=deadline,
                                      what=f"LIST secrets {vault} (page {number})")
            props.extend(items)
            if not token:
                return [self._version(vault, p) for p in props]

    def _find_version(self, vault: str, name: str, version: str, *, deadline: float | None) -> SecretVersion | None:
        """One version's properties from the list, read page by page up to the page that holds it
        (a secret rotated for years has hundreds of versions, 25 to a page)."""
        client = self._secret_client(vault)
        wanted = version.lower()

        def scan():
            pages = client.list_properties_of_secret_versions(name, read_timeout=self._caller.timeout_for(deadline))
            return next((p for p in pages if (p.version or "").lower() == wanted), None)

        props = self._call(scan, deadline=deadline, what=f"LIST versions {vault}/{name}")
        return None if props is None else self._version(vault, props)

    def list_versions(self, vault: str, name: str, *, deadline: float | None = None) -> list[SecretVersion]:
        client = self._secret_client(vault)
        props = self._call(lambda: list(client.list_properties_of_secret_versions(
            name, read_timeout=self._caller.timeout_for(deadline))), deadline=deadline,
            what=f"LIST versions {vault}/{name}")
        return [self._version(vault, p) for p in props]

    def update_version(self, vault: str, name: str, version: str, *, enabled: bool | None = None,
                       expires_on: datetime | None = None, tags: dict[str, str] | None = None,
                       deadline: float | None = None) -> SecretVersion:
        """``tags``: the version's whole tag set (Key Vault replaces it)."""
        client = self._secret_client(vault)
        kwargs: dict[str, Any] = {}
        if tags is not None:
            kwargs["tags"] = dict(tags)
        if enabled is not None:
            kwargs["enabled"] = enabled
        if expires_on is not None:
            kwargs["expires_on"] = expires_on
        props = self._call(lambda: client.update_secret_properties(
            name, version, read_timeout=self._caller.timeout_for(deadline), **kwargs),
            deadline=deadline, what=f"UPDATE secret {vault}/{name}/{version}")
        return self._version(vault, props)

    # -- keys ----------------------------------------------------------------------------
    def get_key(self, vault: str, name: str, *, deadline: float | None = None) -> KeyVersion:
        client = self._key_client(vault)
        key = self._call(lambda: client.get_key(name, read_timeout=self._caller.timeout_for(deadline)),
                         deadline=deadline, what=f"GET key {vault}/{name}")
        p = key.properties
        return KeyVersion(vault, p.name, p.version, bool(p.enabled), p.expires_on, p.created_on)

    def rotate_key(self, vault: str, name: str, *, deadline: float | None = None) -> KeyVersion:
        client = self._key_client(vault)
        key = self._call(lambda: client.rotate_key(name, read_timeout=self._caller.timeout_for(deadline)),
                         deadline=deadline, what=f"ROTATE key {vault}/{name}")
        p = key.properties
        return KeyVersion(vault, p.name, p.version, bool(p.enabled), p.expires_on, p.created_on)

    def update_key(self, vault: str, name: str, version: str, *, expires_on: datetime,
                   deadline: float | None = None) -> KeyVersion:
        """One key version's expiry (``rotate_key`` sets one only when the key's rotation policy
        does). Idempotent: sent again after a lost answer, it writes the same date."""
        client = self._key_client(vault)
        key = self._call(lambda: client.update_key_properties(name, version, expires_on=expires_on,
                                                              read_timeout=self._caller.timeout_for(deadline)),
                         deadline=deadline, what=f"UPDATE key {vault}/{name}/{version}")
        p = key.properties
        return KeyVersion(vault, p.name, p.version, bool(p.enabled), p.expires_on, p.created_on)


class StorageKeysGateway:
    """``listKeys`` / ``regenerateKey`` on a storage account (ARM POST actions)."""

    permissions = ("Microsoft.Storage/storageAccounts/listKeys/action",
                   "Microsoft.Storage/storageAccounts/regenerateKey/action")   # guardrails.permissions

    API_VERSION = "2025-06-01"

    def __init__(self, credential, *, endpoint: str, ca_bundle: str | None = None, timeout: float = 10.0,
                 caller: BudgetedCaller | None = None) -> None:
        from azure.mgmt.resource.resources import ResourceManagementClient

        kwargs = client_options(ca_bundle, retry_total=0)
        self._endpoint = endpoint.rstrip("/")
        self._client = ResourceManagementClient(credential, "00000000-0000-0000-0000-000000000000",
                                                base_url=self._endpoint, **kwargs)
        self._caller = caller or BudgetedCaller(timeout=timeout)

    def _post(self, account_id: str, action: str, body: dict | None, deadline: float | None) -> dict[str, Redacted]:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
        from azure.core.rest import HttpRequest

        url = f"{self._endpoint}/{quote(account_id.lstrip('/'), safe='/()')}/{action}?api-version={self.API_VERSION}"

        def go():
            # bounded by the deadline like every other call: a regenerateKey left hanging on
            # azure-core's 300 s default would outlive the rotation's lease and a second rotation
            # would regenerate the same key again
            response = self._client.send_request(HttpRequest("POST", url, json=body),
                                                 read_timeout=self._caller.timeout_for(deadline))
            if response.status_code == 404:
                raise ResourceNotFoundError(response=response)
            if response.status_code >= 400:
                raise HttpResponseError(response=response)
            return response.json()

        payload = self._caller.call(go, deadline=deadline, what=f"POST {action} {account_id}")
        keys = payload.get("keys") if isinstance(payload, dict) else None
        if not isinstance(keys, list):
            from ..errors import ArmError
            raise ArmError(f"POST {action} {account_id}: unexpected answer shape")
        return {str(k.get("keyName")): Redacted(str(k.get("value"))) for k in keys if isinstance(k, dict)}

    def list_keys(self, account_id: str, *, deadline: float | None = None) -> dict[str, Redacted]:
        return self._post(account_id, "listKeys", None, deadline)

    def regenerate_key(self, account_id: str, key_name: str, *, deadline: float | None = None) -> dict[str, Redacted]:
        return self._post(account_id, "regenerateKey", {"keyName": key_name}, deadline)
