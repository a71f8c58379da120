"""API tokens (API.md, Auth): one per user, expiring a role's lifetime after it was issued, revoked by logout.
Sockets opened with a token close when it stops being valid (`core.ws`)."""

from datetime import datetime, timedelta

from django.conf import settings
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


def revoke_on_password_change(sender, instance, created: bool, **kwargs) -> None:
    """A user saved with a new password (`set_password`: the admin's form, `changepassword`, the create commands)
    loses their token, as Django ends their sessions: whoever held it because the old password leaked keeps
    nothing. (`_password` is the new raw password until the save ends; a hash upgrade at login clears it first.)"""
    if not created and instance._password is not None:
        Token.objects.filter(user_id=instance.pk).delete()  # each deletion voids the ingest route's cache too


def _token_query(key):
    # The role lookups of `expires_at` and of the permission classes read the profiles joined here.
    return Token.objects.select_related("user", "user__driver", "user__merchant").filter(key=key)


# Every API request reads its token: compiled once (core.compiled).
_token_read = CompiledRead(Token, _token_query, (compiled.TEXT,))


def _with_user(key: str) -> Token | None:
    found = _token_read.instances(key)
    return found[0] if found else None


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
            raise exceptions.AuthenticationFailed("Unknown or revoked token; log in again for a new one.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        if is_expired(token):
            raise TokenExpired()
        return token.user, token
