"""Domain errors and the one place that maps them (and DRF's and Django's own errors) to API.md's error format."""

import json
import logging
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger(__name__)


class DomainError(Exception):
    """A precondition of a use case failed. `code` is the API's error code; `status` its HTTP status."""

    code = "domain_error"
    status = HTTPStatus.CONFLICT
    default_detail = "The request conflicts with the current state."

    def __init__(self, detail: str | None = None, *, code: str | None = None, fields: dict | None = None, status=None):
        self.detail = detail or self.default_detail
        if code:
            self.code = code
        if status:
            self.status = status
        self.fields = fields
        super().__init__(self.detail)


class InvalidTransition(DomainError):
    code = "invalid_transition"
    default_detail = "This change is not allowed in the current state."


class NotFound(DomainError):
    code = "not_found"
    status = HTTPStatus.NOT_FOUND
    default_detail = "Not found."


class BadInput(DomainError):
    code = "invalid"
    status = HTTPStatus.BAD_REQUEST
    default_detail = "The request is not valid."


# DRF's key for what is wrong with the input as a whole rather than with one field of it.
NON_FIELD_ERRORS = "non_field_errors"
SEE_FIELDS = "The request is not valid; see fields."


def error_body(code: str, detail: str, fields: dict | None = None, *, status: int | None = None) -> dict:
    """API.md's error shape. A 400 always says what was wrong in `fields` (API.md, Errors): when no one field is
    to blame (a body that is not JSON, a request Django could not read), the detail is given as the input's."""
    if status == HTTPStatus.BAD_REQUEST and not fields:
        fields = {NON_FIELD_ERRORS: [detail]}
    body = {"code": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return body


_DRF_CODES = {
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "throttled",
    drf_exceptions.ParseError: "parse_error",
}


def _flatten(detail) -> object:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.detail, exc.fields, status=exc.status), status=exc.status)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.ValidationError):
        fields = _flatten(exc.detail)
        if not isinstance(fields, dict):
            fields = {NON_FIELD_ERRORS: fields}
        response.data = error_body("invalid", SEE_FIELDS, fields, status=response.status_code)
        return response
    code = _DRF_CODES.get(type(exc), getattr(exc, "default_code", "error"))
    response.data = error_body(code, str(exc.detail), status=response.status_code)
    return response


# Django's own error pages, answered before any view runs or after one crashed, in API.md's words.
_PAGE_CODES = {
    HTTPStatus.BAD_REQUEST: ("bad_request", "The request could not be read."),
    HTTPStatus.FORBIDDEN: ("permission_denied", "You are not allowed to do this."),
    HTTPStatus.NOT_FOUND: (
        "not_found",
        # What merchants got wrong on their first day: `/deliveries/` and `/deliveries/<their external_id>`.
        "There is no API endpoint at this path (paths end without a slash; the ids in them are UUIDs).",
    ),
    HTTPStatus.METHOD_NOT_ALLOWED: ("method_not_allowed", "This endpoint does not take this method."),
    HTTPStatus.INTERNAL_SERVER_ERROR: ("server_error", "Something went wrong on our side; it has been logged."),
}


def json_error(status: int, code: str, detail: str, fields: dict | None = None) -> HttpResponse:
    body = error_body(code, detail, fields, status=status)
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


# The database gone for a moment (restarted, its connections killed, the pool exhausted): 503, not 500, so clients
# retry and nothing was half-written (every action is one transaction).
DATABASE_DOWN = (OperationalError, InterfaceError)


def database_unavailable() -> HttpResponse:
    response = json_error(503, "service_unavailable", "The database is unreachable; try again shortly.")
    response["Retry-After"] = "1"
    return response


class ApiErrorMiddleware:
    """Every answer under /api/ is JSON: what Django itself answers (an unknown path, an unreadable body, an
    uncaught exception such as a deadlock, which Django has already logged with its traceback) is replaced
    by the error shape, DEBUG or not. Placed first, so it sees the answers of every other middleware too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and _content_length(request) > limit:
            return json_error(413, "request_too_large", f"The request body is over {limit} bytes.")
        response = self.get_response(request)
        if response.status_code < 400 or isinstance(response, Response) or _is_json(response):
            return response  # DRF's answers are in the error shape already, in the format the client asked
        status = HTTPStatus(response.status_code)
        code, detail = _PAGE_CODES.get(status, (status.phrase.lower().replace(" ", "_"), status.description))
        return json_error(status, code, detail)

    def process_exception(self, request, exception):
        if request.path.startswith("/api/") and isinstance(exception, DATABASE_DOWN):
            log.warning("database unavailable for %s %s: %s", request.method, request.path, exception)
            return database_unavailable()
        return None


def _content_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0  # Django reads such a body as empty too


def _is_json(response) -> bool:
    return response.get("Content-Type", "").startswith("application/json")
