"""API tokens (API.md, Auth): one per user, expiring a role's lifetime after it was issued, revoked by logout.
Sockets opened with a token close when it stops being valid (`core.ws`)."""

import functools
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, router
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from core import compiled
from core.compiled import CompiledRead
from core.permissions import role_of


class TokenExpired(exceptions.AuthenticationFailed):
    default_detail = "The token has expired; log in again for a new one."
    default_code = "token_expired"


def lifetime(role: str | None) -> timedelta:
    # A user without a role cannot log in; a token made for one by hand gets the shortest lifetime.
    days = settings.RELAY_TOKEN_DAYS[role] if role else min(settings.RELAY_TOKEN_DAYS.values())
    return timedelta(days=days)


def expires_at(token: Token) -> datetime:
    return token.created + lifetime(role_of(token.user))


def is_expired(token: Token) -> bool:
    return timezone.now() >= expires_at(token)


def issue_token(user) -> Token:
    """The user's token; a new one when theirs has expired (every device of the user shares it)."""
    token, _ = Token.objects.get_or_create(user=user)
    if is_expired(token):
        Token.objects.filter(pk=token.pk).delete()
        token, _ = Token.objects.get_or_create(user=user)
    return token


def revoke_token(token: Token) -> None:
    Token.objects.filter(pk=token.pk).delete()


# The role lookups of `expires_at` and of the permission classes read the profiles joined here.
PROFILES = ("driver", "merchant")


@functools.cache
def _joined() -> list[tuple[type[models.Model], str, models.Field | models.ForeignObjectRel | None]]:
    """The models read with a token, in column order: (model, lookup prefix, the relation it hangs from)."""
    user_field = Token._meta.get_field("user")
    joined = [(Token, "", None), (user_field.related_model, "user__", user_field)]
    for name in PROFILES:
        profile = user_field.related_model._meta.get_field(name)
        joined.append((profile.related_model, f"user__{name}__", profile))
    return joined


def _token_query(key):
    columns = [f"{prefix}{field.attname}" for model, prefix, _ in _joined() for field in model._meta.concrete_fields]
    return Token.objects.filter(key=key).values_list(*columns)


# Every API request reads its token: compiled once (core.compiled), the objects built from the row as
# select_related("user", "user__driver", "user__merchant") would build them.
_token_read = CompiledRead(Token, _token_query, (compiled.TEXT,))


def _with_user(key: str) -> Token | None:
    rows = _token_read(key)
    if not rows:
        return None
    row, start, db = rows[0], 0, router.db_for_read(Token)
    token = user = None
    for model, _, relation in _joined():
        names = [field.attname for field in model._meta.concrete_fields]
        values, start = row[start : start + len(names)], start + len(names)
        present = values[names.index(model._meta.pk.attname)] is not None  # a profile's columns are NULL without one
        instance = model.from_db(db, names, values) if present else None
        if relation is None:
            token = instance
            continue
        parent = token if user is None else user
        relation.set_cached_value(parent, instance)  # None: no such profile, known without a query
        if instance is not None:
            relation.remote_field.set_cached_value(instance, parent)
        user = user or instance
    return token


def valid_token(key: str | None) -> Token | None:
    """The token with this key if it may be used now: it exists, has not expired and its user is active."""
    token = _with_user(key) if key else None
    if token is None or not token.user.is_active or is_expired(token):
        return None
    return token


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token check plus the expiry: an expired token answers 401 `token_expired`."""

    def authenticate_credentials(self, key):
        token = _with_user(key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        if is_expired(token):
            raise TokenExpired()
        return token.user, token
