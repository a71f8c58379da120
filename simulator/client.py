"""The simulator's HTTP side: one shared httpx client, one `Account` per logged-in user. A request never
raises: errors (network or an error status) are logged with the API's error code and counted."""

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass

import httpx

log = logging.getLogger("relay.simulation")

LOGIN_ATTEMPTS = 8


@dataclass
class Reply:
    status: int
    body: dict

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Account:
    def __init__(self, http: httpx.AsyncClient, username: str, stats: Counter):
        self.http = http
        self.username = username
        self.stats = stats
        self.token: str | None = None
        self.role: str | None = None

    async def login(self, password: str) -> bool:
        """POST /api/v1/auth/token, waiting out the login throttle (429) instead of giving up."""
        for attempt in range(LOGIN_ATTEMPTS):
            credentials = {"username": self.username, "password": password}
            reply = await self.request("POST", "/api/v1/auth/token", json=credentials)
            if reply is not None and reply.ok:
                self.token, self.role = reply.body["token"], reply.body.get("role")
                return True
            if reply is None or reply.status != 429:
                return False
            await asyncio.sleep(min(30, 2 + attempt * 5))
        return False

    async def request(self, method: str, path: str, *, json=None, params=None, idempotency_key=None) -> Reply | None:
        """The reply, error statuses included (logged), or None when the server could not be reached."""
        headers = {}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            response = await self.http.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            self.stats["request_errors"] += 1
            log.warning("%s: %s %s failed: %s", self.username, method, path, str(exc) or type(exc).__name__)
            return None
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {"detail": response.text[:200]}
        if not isinstance(body, dict):
            body = {"results": body}
        reply = Reply(response.status_code, body)
        if not reply.ok:
            self.stats["request_errors"] += 1
            self.stats[f"http_{response.status_code}"] += 1
            log.warning(
                "%s: %s %s -> %s %s: %s",
                self.username,
                method,
                path,
                response.status_code,
                body.get("code", ""),
                body.get("detail", ""),
            )
        return reply

    async def count(self, path: str, **params) -> int | None:
        """The `count` of a paginated list endpoint."""
        reply = await self.request("GET", path, params=params)
        if reply is None or not reply.ok:
            return None
        return reply.body.get("count")
