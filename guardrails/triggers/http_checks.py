"""HTTP triggers of the pre-flight check API (``guardrails/checks/api.py`` does the work).

    POST /api/checks/job               AuthLevel.FUNCTION
    POST /api/checks/resource          AuthLevel.FUNCTION   (?remediate=true for allowed callers)
    POST /api/checks/model-promotion   AuthLevel.FUNCTION
    GET  /api/openapi.json             AuthLevel.FUNCTION
    GET  /api/health                   AuthLevel.ANONYMOUS  (liveness; no secrets, no versions)

Each function converts ``func.HttpRequest`` into the framework-free ``HttpIn`` and the answer
back into ``func.HttpResponse``; nothing else happens here.
"""

from __future__ import annotations

import threading

import azure.functions as func

bp = func.Blueprint()
_api = None
_lock = threading.Lock()


def api():
    """The routes, built on first request: pydantic stays out of the Event Grid path's cold start."""
    global _api
    if _api is None:
        with _lock:
            if _api is None:
                from ..bootstrap import get_checks
                from ..checks.api import CheckApi
                _api = CheckApi(get_checks)
    return _api


def to_http_in(req: func.HttpRequest):
    from ..checks.api import http_in
    return http_in(req.method, req.get_body(), dict(req.headers), dict(req.params))


def to_response(out) -> func.HttpResponse:
    headers = dict(out.headers)
    mimetype = headers.pop("Content-Type", "application/json")
    return func.HttpResponse(body=out.body, status_code=out.status, headers=headers, mimetype=mimetype,
                             charset="utf-8")


@bp.function_name("check_job")
@bp.route(route="checks/job", methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.FUNCTION)
def check_job(req: func.HttpRequest) -> func.HttpResponse:
    return to_response(api().job(to_http_in(req)))


@bp.function_name("check_resource")
@bp.route(route="checks/resource", methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.FUNCTION)
def check_resource(req: func.HttpRequest) -> func.HttpResponse:
    return to_response(api().resource(to_http_in(req)))


@bp.function_name("check_model_promotion")
@bp.route(route="checks/model-promotion", methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.FUNCTION)
def check_model_promotion(req: func.HttpRequest) -> func.HttpResponse:
    return to_response(api().model_promotion(to_http_in(req)))


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.FUNCTION)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return to_response(api().openapi(to_http_in(req)))


@bp.function_name("health")
@bp.route(route="health", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return to_response(api().health(to_http_in(req)))
