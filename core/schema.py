"""The one place the OpenAPI schema learns what every operation can answer besides success (API.md, Errors)
and the `Idempotency-Key` header every POST accepts: a drf-spectacular postprocessing hook, so no view repeats it.

Which errors an operation documents follows from what it is: every one may be throttled (429) or find the
database unreachable (503); one that takes input may find it bad (400); one behind a login may be refused (401,
403); one naming an object or a page may not find it (404), and a tracking link may have expired (410); a POST
may conflict with the state (409), be too large (413) or reuse a key with another body (422)."""

import threading

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView

from core.idempotency import HEADER_NAME, MAX_KEY_LENGTH

ERROR_SCHEMA = {
    "type": "object",
    "description": "API.md's error shape.",
    "properties": {
        "code": {"type": "string", "description": "snake_case, stable: what went wrong", "example": "invalid"},
        "detail": {"type": "string", "description": "A sentence for a human."},
        "fields": {
            "type": "object",
            "description": "Every 400 (bad input) and only then: what was wrong with each field, under "
            "`non_field_errors` when no single field is at fault.",
            "additionalProperties": {},
        },
    },
    "required": ["code", "detail"],
}

# status → (description, an example body)
ERRORS = {
    "400": ("Bad input; `fields` says what was wrong.", "invalid", "The request is not valid; see fields."),
    "401": ("Not authenticated, or the token expired or was revoked.", "not_authenticated", "Log in first."),
    "403": ("Authenticated, but this operation is not for your role.", "permission_denied", "Not for your role."),
    "404": ("Missing, or not yours (another party's objects are never revealed).", "not_found", "Not found."),
    "409": (
        "Conflicts with the current state (`invalid_transition`, `offer_not_pending`, `offer_expired`, ...), or "
        "a retry with the same Idempotency-Key while the first is still running (`request_in_progress`).",
        "invalid_transition",
        "This change is not allowed in the current state.",
    ),
    "410": ("Gone: the tracking link has expired.", "gone", "This tracking link has expired."),
    "413": ("The body is too large.", "request_too_large", "The request body is over 2621440 bytes."),
    "422": (
        "This Idempotency-Key was used before for another request: another body, or another endpoint.",
        "idempotency_key_reused",
        "This Idempotency-Key was already used for another request (another body, or another endpoint); a new "
        "request needs a new key.",
    ),
    "429": ("Too many requests; `Retry-After` says when to try again.", "throttled", "Request was throttled."),
    "503": (
        "A service Relay needs (the database) is unreachable for a moment; retry.",
        "service_unavailable",
        "The database is unreachable; try again shortly.",
    ),
}

IDEMPOTENCY_KEY = {
    "name": HEADER_NAME,
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: the first answer for (you, this key) is stored for 24 h and replayed byte "
    "for byte; the same key with another body answers 422, a retry while the first runs 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
}

LOGIN, LOGOUT = "/api/v1/auth/token", "/api/v1/auth/logout"


def _statuses(path: str, method: str, operation: dict) -> list[str]:
    parameters = operation.get("parameters", [])
    takes_input = "requestBody" in operation or any(p["in"] == "query" for p in parameters)
    public = "security" not in operation  # no authentication at all (tracking: the link's token is the credential)
    statuses = ["429", "503"]
    if takes_input or method == "post":  # a POST may carry a bad Idempotency-Key
        statuses.append("400")
    if not public or path == LOGIN:  # the login answers 401 to wrong credentials
        statuses.append("401")
    if not public and path not in (LOGIN, LOGOUT):
        statuses.append("403")
    if any(p["in"] == "path" for p in parameters) or any(p["name"] == "page" for p in parameters):
        statuses.append("404")
    if any(p["in"] == "path" and p["name"] == "token" for p in parameters):
        statuses.append("410")
    if method == "post":
        statuses += ["409", "413", "422"]
    return statuses


def _input_named(result: dict, operation: dict) -> str:
    """What a 400 of this operation's example names: its body's first required field, else its first query
    parameter, else the Idempotency-Key (a POST with no body may still carry a bad one)."""
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in body:
        body = result["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    names = body.get("required") or list(body.get("properties", {}))
    names = names or [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
    return names[0] if names else HEADER_NAME


def _response(status: str, field: str) -> dict:
    description, code, detail = ERRORS[status]
    example = {"code": code, "detail": detail}
    if status == "400":
        example["fields"] = {field: ["This value is not valid."]}
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}, "example": example}},
    }


def document_errors_and_idempotency(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in _statuses(path, method, operation):
                responses.setdefault(status, _response(status, _input_named(result, operation)))
            if method == "post":
                operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY)
    return result


class SchemaView(SpectacularAPIView):
    """`/api/schema/`, the same for every caller: each process builds and renders it once per language and format
    and answers those bytes from then on. Built for every request it cost ~50 ms of CPU, open to anyone: 30
    anonymous clients asking for it again and again held every other API request of the process ~1.8 s (against
    ~0.1 s for as many asking for /healthz).

    It is built one request at a time per process: drf-spectacular's generator is not thread-safe (its extensions
    load their target classes lazily, its warnings are a global: tfranzel/drf-spectacular#1368), and clients
    asking a fresh server at once got a 500."""

    _generating = threading.Lock()
    _answers: dict = {}  # (language, renderer class) -> (body, content type, content disposition)

    @extend_schema(exclude=True)  # as drf-spectacular declares its own get: the schema does not list itself
    def get(self, request, *args, **kwargs):
        renderer = request.accepted_renderer
        # Only the languages the site speaks make a schema of their own: any other `lang` reads as the default.
        language = request.GET.get("lang") if request.GET.get("lang") in dict(settings.LANGUAGES) else None
        key = (language, type(renderer))
        answer = self._answers.get(key)
        if answer is None:
            response = super().get(request, *args, **kwargs)
            body = renderer.render(response.data, renderer.media_type, self.get_renderer_context())
            content_type = f"{renderer.media_type}; charset={renderer.charset}" if renderer.charset else None
            answer = self._answers[key] = (body, content_type or renderer.media_type, response["Content-Disposition"])
        body, content_type, disposition = answer
        return HttpResponse(body, content_type=content_type, headers={"Content-Disposition": disposition})

    def _get_version_parameter(self, request):
        return None  # one API version: `?version=` once wrote whatever it was given into the schema's own

    def _get_schema_response(self, request):
        # What the view's get (kept as drf-spectacular declares it: out of the schema) calls to generate it.
        with self._generating:
            return super()._get_schema_response(request)
