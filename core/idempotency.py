"""`Idempotency-Key` for every API POST (API.md, conventions).

The first response for (caller, key) is stored for 24 h and replayed byte for byte; the same key with another
body answers 422; a retry while the first is still running answers 409 `request_in_progress`. Only a response
that completed the request is stored: 2xx, or a 4xx that the same body would always get. One that says nothing
about the body (401, 403, 406, 408, 415, 429: credentials, headers, rate, time) or a crash (5xx, or a process
that died mid-way) releases the key, so the client's retry runs for real. On PostgreSQL a running request holds a
session lock on its key, which the database drops with the connection of a process that died: the retry takes its
claim over at once.
Without session locks (SQLite; a pooler that keeps no session, DB_PREPARE_THRESHOLD=none) a claim is taken over
once older than `CLAIM_TIMEOUT`. A replay goes only to a credential that still works, and never hands out one
that no longer does (a login's token, revoked).
"""

import hashlib
import json
import logging
import threading
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.http import HttpResponse
from django.utils import timezone
from rest_framework.throttling import BaseThrottle

from core.errors import DATABASE_DOWN, database_unavailable, json_error
from core.models import IdempotencyRecord
from core.purge import delete_in_batches
from core.tokens import valid_token

HEADER_NAME = "Idempotency-Key"
HEADER = "HTTP_IDEMPOTENCY_KEY"
MAX_KEY_LENGTH = 255
RETENTION = timedelta(hours=24)
CLAIM_TIMEOUT = timedelta(seconds=60)
# Answers about the caller, its headers (Accept, Content-Type) or the moment, not the body: the same retry may well
# succeed.
NOT_FINAL = {401, 403, 406, 408, 415, 429}
REPLAYED = "Idempotent-Replayed"
log = logging.getLogger(__name__)


def _caller(request) -> str:
    """The credential; for a login, which has none, the client's address as the limits tell it (NUM_PROXIES):
    behind a proxy, REMOTE_ADDR is the proxy's, shared by every client."""
    credential = request.META.get("HTTP_AUTHORIZATION", "")
    if not credential:
        credential = "anonymous:" + (BaseThrottle().get_ident(request) or "")
    return hashlib.sha256(credential.encode()).hexdigest()


def _credential_still_valid(request) -> bool:
    """A stored answer is replayed only to a credential that still works: a token revoked by logout, expired or
    of a suspended account gets what any request with it gets (401), not the answer it once had."""
    scheme, _, key = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if not scheme:
        return True  # anonymous (a login): the body itself holds the credential
    return scheme.lower() == "token" and valid_token(key.strip()) is not None


def _gives_a_dead_token(request, record) -> bool:
    """A login's stored answer whose token no longer works (logged out since, or expired). Replayed, it would hand
    the app a token that every request refuses, under a key the app retries with; the login runs again instead,
    and its new answer is the one stored."""
    if request.META.get("HTTP_AUTHORIZATION") or not 200 <= record.status_code < 300:
        return False
    try:
        given = json.loads(bytes(record.body))
    except ValueError:
        return False
    token = given.get("token") if isinstance(given, dict) else None
    return isinstance(token, str) and valid_token(token) is None


# Lock ids of the requests this thread runs now, on its database connection (Django's are per thread). A retry on
# the same session (a request that sends its own retry, as a test does) would be granted its re-entrant lock again.
_this_thread = threading.local()


def _running() -> set[int]:
    if not hasattr(_this_thread, "locks"):
        _this_thread.locks = set()
    return _this_thread.locks


def _lock_id(caller: str, key: str) -> int:
    digest = hashlib.sha256(f"idempotency\n{caller}\n{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _take_lock(lock_id: int) -> bool | None:
    """PostgreSQL: whether this request now holds its key's lock (False: a request with the key is running, here
    or in a live process). None without session locks: SQLite, or a pooler in transaction mode (PgBouncer), which
    runs each statement on any server connection and is why prepared statements are off (DB_PREPARE_THRESHOLD)."""
    if connection.vendor != "postgresql" or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None:
        return None
    if lock_id in _running():
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_id])
        taken = cursor.fetchone()[0]
    if taken:
        _running().add(lock_id)
    return taken


def _release_lock(lock_id: int) -> None:
    _running().discard(lock_id)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_id])
    except DATABASE_DOWN:
        # The lock goes with the session. A connection that lives on (the statement cancelled by a timeout) would
        # go back to the pool still holding it, and every retry of the key answered by another process would be a
        # conflict until the pool recycled it: closed first, the pool drops it instead of keeping it.
        if connection.connection is not None:
            connection.connection.close()
        connection.close()


def _write_claim(write) -> bool:
    """Release or complete the claim. The request's database connection may have died while the view ran (the view
    then answered 503): the write goes once more on a new connection, or the claim, still open, made every retry
    of the key answer 409 `request_in_progress` for CLAIM_TIMEOUT, a driver's accept longer than its offer lasts.
    False when the database stays unreachable (the claim is then abandoned, and taken over as a dead process's is)."""
    for _ in range(2):
        try:
            write()
            return True
        except DATABASE_DOWN:
            connection.close()  # a dead connection is not reused: the next query opens (or checks out) a new one
    log.warning("idempotency: the database is unreachable; a claim is left to expire")
    return False


def _fingerprint(request) -> str:
    digest = hashlib.sha256()
    digest.update(request.path.encode() + b"\n")
    digest.update(request.body)
    return digest.hexdigest()


class IdempotencyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        key = request.META.get(HEADER)
        if request.method != "POST" or key is None or not request.path.startswith("/api/"):
            return self.get_response(request)
        if not key or len(key) > MAX_KEY_LENGTH:
            wrong = f"{HEADER_NAME} must be 1 to {MAX_KEY_LENGTH} characters."
            return json_error(400, "invalid_idempotency_key", wrong, fields={HEADER_NAME: [wrong]})

        caller, fingerprint = _caller(request), _fingerprint(request)
        lock_id, lock = _lock_id(caller, key), None
        try:
            try:
                lock = _take_lock(lock_id)
                record, conflict = self._claim(request, caller, key, fingerprint, lock=lock)
            except DATABASE_DOWN:
                return database_unavailable()
            if conflict is not None:
                if conflict.has_header(REPLAYED) and not _credential_still_valid(request):
                    return self.get_response(request)  # the view refuses it (401), as any request with it
                return conflict
            return self._run(request, record)
        finally:
            if lock:
                _release_lock(lock_id)

    def _run(self, request, record):
        try:
            response = self.get_response(request)
        except BaseException:
            _write_claim(record.delete)
            raise
        if response.status_code >= 500 or response.status_code in NOT_FINAL or response.streaming:
            if not _write_claim(record.delete):
                return database_unavailable()
            return response
        # An update, not a save: if this request ran so long that a retry took its claim over, the retry's
        # record stands and this one is simply not stored.
        _write_claim(
            lambda: IdempotencyRecord.objects.filter(pk=record.pk).update(
                completed=True,
                status_code=response.status_code,
                content_type=response.get("Content-Type", ""),
                body=bytes(response.content),
            )
        )
        return response

    def _claim(self, request, caller: str, key: str, fingerprint: str, *, lock: bool | None):
        """`lock`: whether this request holds its key's lock (`_take_lock`). Without it, a request with the key is
        running: this one claims nothing."""
        now = timezone.now()
        for _ in range(3):
            if lock is not False:
                try:
                    with transaction.atomic():
                        record = IdempotencyRecord.objects.create(
                            caller=caller, key=key, fingerprint=fingerprint, expires_at=now + RETENTION
                        )
                    return record, None
                except IntegrityError:
                    pass
            existing = IdempotencyRecord.objects.filter(caller=caller, key=key).first()
            if existing is None:
                if lock is False:
                    break  # the running one is about to claim it
                continue  # released between our insert and our read: try again
            # An open claim whose key nobody holds was left by a process that died (or lost its database).
            left = lock if lock is not None else existing.created_at < now - CLAIM_TIMEOUT
            abandoned = not existing.completed and left
            # A login answered with a token since revoked is not replayed: the login runs again (see the function).
            same = existing.completed and existing.fingerprint == fingerprint
            outlived = same and _gives_a_dead_token(request, existing)
            if existing.expires_at <= now or abandoned or outlived:
                IdempotencyRecord.objects.filter(pk=existing.pk, created_at=existing.created_at).delete()
                continue
            if existing.fingerprint != fingerprint:
                return None, json_error(
                    422,
                    "idempotency_key_reused",
                    # The key stands for one request: its endpoint as well as its body (`_fingerprint`).
                    "This Idempotency-Key was already used for another request (another body, or another "
                    "endpoint); a new request needs a new key.",
                )
            if not existing.completed:
                return None, _in_progress()
            replay = HttpResponse(bytes(existing.body), status=existing.status_code, content_type=existing.content_type)
            replay[REPLAYED] = "true"
            return None, replay
        return None, _in_progress()


def _in_progress() -> HttpResponse:
    """409 to a retry while the first request with its key still runs: it is worth retrying in a moment."""
    response = json_error(409, "request_in_progress", "A request with this Idempotency-Key is still being processed.")
    response["Retry-After"] = "1"
    return response


def purge_expired_idempotency_records() -> int:
    """Delete the records past their 24 h, in short batches (the hourly beat job). An hour's records are every POST
    sent with a key, a driver app's location batches included: one DELETE of them all held its row locks and wrote
    its WAL in one long transaction. Returns how many were deleted."""
    return delete_in_batches(IdempotencyRecord.objects.filter(expires_at__lte=timezone.now()))
