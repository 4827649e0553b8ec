"""The HTTP transport every Azure SDK client of the product sends through: azure-core's
``HttpTransport`` interface on urllib3 directly.

azure-core's default ``RequestsTransport`` hands each call to a ``requests.Session``, which for
every call merges session and call settings (seven ``merge_setting`` passes with runtime protocol
checks), re-validates every header, builds and merges a cookie jar, runs hooks and wraps urllib3's
response in its own. The product uses none of that: no cookies, no session auth, no hooks, no
redirects (azure-core's own policies handle those), one fixed proxy setting. That machinery was
about a third of the client CPU of a table write or an ARM call, and an event makes 1 to 9 calls.

What stays the same as ``RequestsTransport``:
- azure-core's errors, which the product's retry and lost-answer logic (``retry.lost_answer``)
  reads: ``ServiceRequestError`` when the request never left (connection refused, name
  resolution, TLS handshake, proxy, a header value HTTP cannot carry),
  ``ServiceRequestTimeoutError`` for a connect timeout, ``ServiceResponseError`` /
  ``ServiceResponseTimeoutError`` when it was sent and the answer did not come back (a TLS failure
  after the request was written whole included), ``IncompleteReadError`` when the body broke off,
  ``DecodeError`` for a bad encoding.
- Connection pooling per host (10 connections, as requests' adapter keeps), TLS verified against
  the configured CA bundle or certifi's, an optional client certificate, an HTTP(S) proxy with
  credentials in its URL (``host:port`` taken as HTTP), per-call ``connection_timeout``/
  ``read_timeout``/``connection_verify``/``proxies``/``stream``.
- A body-less POST/PUT/PATCH says ``Content-Length: 0``; a header whose value is None is left out.

What it does not do, and hands to a ``RequestsTransport`` it keeps for the purpose: multipart
``files``, form ``dict`` bodies, streamed (file or iterator) upload bodies, and azure-core's legacy
``pipeline.transport.HttpRequest``. Of the product's clients only the Event Grid publisher (decision
events, off the event path) still builds legacy requests; the fallback keeps it, and any future
one, correct rather than fast.

Differences on purpose: a ``str`` body is sent as UTF-8 with its length in bytes (azure-core's
``Content-Length`` counts characters, which cuts a non-ASCII body short); no
``Accept-Encoding: gzip, deflate`` is added (requests adds it; Azure
answers identity unless asked), and a read timeout in the middle of a body is a
``ServiceResponseTimeoutError`` (``RequestsTransport`` reports it as ``ServiceRequestError``, "never
sent", which would make the product believe a write it made did not happen).
"""

from __future__ import annotations

import threading
from typing import Any, MutableMapping, Optional

from azure.core.exceptions import (DecodeError, IncompleteReadError, ServiceRequestError,
                                   ServiceRequestTimeoutError, ServiceResponseError,
                                   ServiceResponseTimeoutError)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.utils import CaseInsensitiveDict
import urllib3
import urllib3.connection
from urllib3.exceptions import (ConnectTimeoutError, NewConnectionError, PoolError, ProtocolError,
                                ProxyError, ReadTimeoutError, SSLError)
from urllib3.exceptions import DecodeError as Urllib3DecodeError
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import LocationValueError

POOL_CONNECTIONS = 10       # hosts kept (requests' adapter default)
POOL_MAXSIZE = 10           # connections kept per host (requests' adapter default)
_KNOWN_OPTIONS = frozenset({"connection_timeout", "read_timeout", "connection_verify", "connection_cert",
                            "proxies", "stream", "connection_data_block_size"})


# Whether the request on this thread was written whole: the connection reached ``getresponse``.
# A TLS error or a refusal after that point means the request may have been acted on (a lost
# answer), not that it never left; urllib3 raises the same exception types either way.
_written = threading.local()


class _HTTPConnection(urllib3.connection.HTTPConnection):
    def getresponse(self):  # type: ignore[override]
        _written.value = True
        return super().getresponse()


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    def getresponse(self):  # type: ignore[override]
        _written.value = True
        return super().getresponse()


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


def _is_rest(request: Any) -> bool:
    from azure.core.pipeline._tools import is_rest
    return is_rest(request)


class _StreamDownload:
    """azure-core's stream-download generator contract (``pipeline, response, decompress=``) over
    urllib3's ``HTTPResponse.stream``, with the same error mapping as a preloaded body."""

    def __init__(self, pipeline: Any, response: "Urllib3TransportResponse", **kwargs: Any) -> None:
        decompress = kwargs.pop("decompress", True)
        if kwargs:
            raise TypeError(f"Got an unexpected keyword argument: {next(iter(kwargs))}")
        self.pipeline, self.response, self.request = pipeline, response, response.request
        self.content_length = int(response.headers.get("Content-Length", 0) or 0)
        self._chunks = response.internal_response.stream(response.block_size, decode_content=decompress)

    def __len__(self) -> int:
        return self.content_length

    def __iter__(self) -> "_StreamDownload":
        return self

    def __next__(self) -> bytes:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self.response.drained()
            raise
        except Exception as exc:
            self.response.close()
            raise _body_error(exc) from exc
        if not chunk:
            self.response.drained()
            raise StopIteration
        return chunk


class Urllib3TransportResponse(HttpResponseImpl):
    """An ``azure.core.rest.HttpResponse`` over a urllib3 ``HTTPResponse``."""

    def __init__(self, *, request: Any, internal_response: urllib3.BaseHTTPResponse,
                 block_size: int, content: Optional[bytes] = None) -> None:
        headers = CaseInsensitiveDict(internal_response.headers)
        super().__init__(request=request, internal_response=internal_response,
                         status_code=internal_response.status, reason=internal_response.reason or "",
                         headers=headers, content_type=headers.get("content-type"),
                         block_size=block_size, stream_download_generator=_StreamDownload)
        self._drained = content is not None
        if content is not None:
            self._content = content
            self._is_stream_consumed = True

    def drained(self) -> None:
        """The body was read to its end: the connection goes back to the pool."""
        self._drained = True
        self._internal_response.release_conn()

    def close(self) -> None:
        if not self.is_closed:
            self._is_closed = True
            internal = self._internal_response
            if not self._drained:            # unread bytes left on it: the connection cannot be reused
                internal.close()
            internal.release_conn()


def _body_error(exc: BaseException) -> BaseException:
    """The azure-core error for a failure while reading a response body."""
    if isinstance(exc, ReadTimeoutError):
        return ServiceResponseTimeoutError(exc, error=exc)
    if isinstance(exc, ProtocolError):
        if "IncompleteRead" in str(exc) or "InvalidChunkLength" in str(exc):
            return IncompleteReadError(exc, error=exc)
        return ServiceResponseError(exc, error=exc)
    if isinstance(exc, Urllib3DecodeError):
        return DecodeError(exc, error=exc)
    if isinstance(exc, (SSLError, Urllib3HTTPError, OSError)):
        return ServiceResponseError(exc, error=exc)
    return exc


def _send_error(exc: BaseException, *, written: bool = False) -> BaseException:
    """The azure-core error for a failure before a response's status line and headers came;
    ``written``: the request had been written whole (a TLS failure then is a lost answer)."""
    if isinstance(exc, NewConnectionError):             # refused, unreachable, name not resolved
        return ServiceRequestError(exc, error=exc)
    if written and isinstance(exc, SSLError):
        return ServiceResponseError(exc, error=exc)
    if isinstance(exc, ConnectTimeoutError):
        return ServiceRequestTimeoutError(exc, error=exc)
    if isinstance(exc, ReadTimeoutError):                # sent; no answer in time
        return ServiceResponseTimeoutError(exc, error=exc)
    if isinstance(exc, (SSLError, ProxyError, PoolError, LocationValueError)):
        return ServiceRequestError(exc, error=exc)
    if isinstance(exc, (ProtocolError, Urllib3HTTPError)):   # the connection dropped after sending
        return ServiceResponseError(exc, error=exc)
    return exc


def _proxy_manager(proxy: str, **pool_kwargs: Any) -> urllib3.ProxyManager:
    if "://" not in proxy:              # "host:port", as HTTPS_PROXY is often written: HTTP, as requests took it
        proxy = "http://" + proxy
    parsed = urllib3.util.parse_url(proxy)
    headers = None
    if parsed.auth:
        from urllib.parse import unquote
        user, _, password = parsed.auth.partition(":")
        headers = urllib3.util.make_headers(proxy_basic_auth=f"{unquote(user)}:{unquote(password)}")
        proxy = parsed._replace(auth=None).url
    manager = urllib3.ProxyManager(proxy, proxy_headers=headers, **pool_kwargs)
    manager.pool_classes_by_scheme = _POOLS
    return manager


class Urllib3Transport(HttpTransport):
    """azure-core ``HttpTransport`` on urllib3; thread-safe (urllib3's pools are)."""

    def __init__(self, *, connection_timeout: float = 300, read_timeout: float = 300,
                 connection_verify: bool | str = True, connection_cert: Any = None,
                 proxies: Optional[MutableMapping[str, str]] = None, data_block_size: int = 4096) -> None:
        self.connection_timeout, self.read_timeout = connection_timeout, read_timeout
        self.verify, self.cert = connection_verify, connection_cert
        self.proxies = dict(proxies) if proxies else None
        self.block_size = data_block_size
        self._managers: dict[tuple, urllib3.PoolManager] = {}
        self._lock = threading.Lock()
        self._fallback: Any = None

    # -- HttpTransport ------------------------------------------------------------------------
    def __enter__(self) -> "Urllib3Transport":
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def open(self) -> None:
        """Pools open on first use."""

    def close(self) -> None:
        with self._lock:
            managers, self._managers = list(self._managers.values()), {}
            fallback, self._fallback = self._fallback, None
        for manager in managers:
            manager.clear()
        if fallback is not None:
            fallback.close()

    def send(self, request: Any, **kwargs: Any) -> Any:
        files = getattr(request, "files", None)
        data = getattr(request, "data", None)
        if not _is_rest(request) or files or not (data is None or isinstance(data, (bytes, str))):
            if self.proxies and "proxies" not in kwargs:
                kwargs["proxies"] = self.proxies
            return self._fallback_transport().send(request, **kwargs)
        unknown = set(kwargs) - _KNOWN_OPTIONS
        if unknown:
            raise TypeError(f"Urllib3Transport.send() got an unexpected keyword argument '{sorted(unknown)[0]}'")
        stream = bool(kwargs.get("stream", False))
        timeout = urllib3.Timeout(connect=kwargs.get("connection_timeout", self.connection_timeout),
                                  read=kwargs.get("read_timeout", self.read_timeout))
        proxies = kwargs.get("proxies", self.proxies)
        # a header left None is left out, as requests did
        headers = {name: value for name, value in request.headers.items() if value is not None}
        body = data
        if isinstance(data, str):
            body = data.encode("utf-8")
            # azure-core counts a str body's characters, not its bytes
            for name in [n for n in headers if n.lower() == "content-length"]:
                headers[name] = str(len(body))
        _written.value = False
        try:
            manager = self._manager(kwargs.get("connection_verify", self.verify),
                                    kwargs.get("connection_cert", self.cert),
                                    self._proxy_for(request.url, proxies))
            resp = manager.urlopen(request.method, request.url, body=body, headers=headers,
                                   redirect=False, retries=False, timeout=timeout,
                                   preload_content=False, decode_content=True)
        except ValueError as exc:
            if isinstance(exc, Urllib3HTTPError):           # a URL or proxy URL urllib3 cannot use
                raise _send_error(exc) from exc
            # http.client refuses a header value with CR/LF or outside Latin-1 before writing it; the
            # value (it may be a credential) stays out of the error and its chain
            if getattr(_written, "value", False):
                raise ServiceResponseError(f"{request.method}: the HTTP client failed after the request was "
                                           f"written ({type(exc).__name__})") from None
            raise ServiceRequestError(f"{request.method} refused by the HTTP client: a header value HTTP cannot "
                                      "carry (CR, LF or a character outside Latin-1); nothing was sent") from None
        except Exception as exc:
            mapped = _send_error(exc, written=getattr(_written, "value", False))
            if mapped is exc:
                raise
            raise mapped from exc
        block_size = kwargs.get("connection_data_block_size") or self.block_size
        if stream:
            return Urllib3TransportResponse(request=request, internal_response=resp, block_size=block_size)
        try:
            content = resp.read(decode_content=True)
        except Exception as exc:
            resp.close()
            resp.release_conn()
            mapped = _body_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        resp.release_conn()
        return Urllib3TransportResponse(request=request, internal_response=resp, block_size=block_size,
                                        content=content)

    # -- internals ----------------------------------------------------------------------------
    @staticmethod
    def _proxy_for(url: str, proxies: Optional[MutableMapping[str, str]]) -> Optional[str]:
        if not proxies:
            return None
        scheme = url.split(":", 1)[0].lower()
        return proxies.get(scheme) or proxies.get("all") or None

    def _manager(self, verify: Any, cert: Any, proxy: Optional[str]) -> urllib3.PoolManager:
        key = (verify, cert if not isinstance(cert, list) else tuple(cert), proxy)
        manager = self._managers.get(key)
        if manager is not None:
            return manager
        with self._lock:
            manager = self._managers.get(key)
            if manager is None:
                manager = self._managers[key] = self._new_manager(verify, cert, proxy)
        return manager

    @staticmethod
    def _new_manager(verify: Any, cert: Any, proxy: Optional[str]) -> urllib3.PoolManager:
        kwargs: dict[str, Any] = {"num_pools": POOL_CONNECTIONS, "maxsize": POOL_MAXSIZE, "block": False}
        if verify is False:
            kwargs["cert_reqs"] = "CERT_NONE"
        else:
            import certifi
            kwargs["cert_reqs"] = "CERT_REQUIRED"
            bundle = verify if isinstance(verify, str) else certifi.where()
            kwargs["ca_certs" if not _is_dir(bundle) else "ca_cert_dir"] = bundle
        if cert:
            if isinstance(cert, (tuple, list)):
                kwargs["cert_file"], kwargs["key_file"] = cert[0], cert[1]
            else:
                kwargs["cert_file"] = cert
        if proxy:
            return _proxy_manager(proxy, **kwargs)
        manager = urllib3.PoolManager(**kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager

    def _fallback_transport(self) -> Any:
        with self._lock:
            if self._fallback is None:
                from azure.core.pipeline.transport import RequestsTransport
                self._fallback = RequestsTransport(
                    connection_timeout=self.connection_timeout, read_timeout=self.read_timeout,
                    connection_verify=self.verify, connection_cert=self.cert,
                    connection_data_block_size=self.block_size, use_env_settings=False)
            fallback = self._fallback
        return fallback


def _is_dir(path: str) -> bool:
    import os
    return os.path.isdir(path)


__all__ = ["POOL_CONNECTIONS", "POOL_MAXSIZE", "Urllib3Transport", "Urllib3TransportResponse"]
