"""Roles of API.md: a user is a driver, a merchant or ops (staff)."""

from django.core.exceptions import ObjectDoesNotExist
from rest_framework.permissions import BasePermission


def role_of(user) -> str | None:
    if not user or not user.is_authenticated:
        return None
    for role in ("driver", "merchant"):
        if _has_profile(user, role):
            return role
    if user.is_staff:
        return "ops"
    return None


def _has_profile(user, role: str) -> bool:
    try:
        getattr(user, role)
    except ObjectDoesNotExist:
        return False
    return True


class _HasRole(BasePermission):
    role = ""
    message = "This endpoint is not for your role."

    def has_permission(self, request, view) -> bool:
        # Driver and merchant endpoints look up only their own profile (one query, cached on the user).
        user = request.user
        return bool(user and user.is_authenticated) and _has_profile(user, self.role)


class IsDriver(_HasRole):
    role = "driver"


class IsMerchant(_HasRole):
    role = "merchant"


class IsOps(_HasRole):
    role = "ops"

    def has_permission(self, request, view) -> bool:
        return role_of(request.user) == "ops"
