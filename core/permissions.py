"""Roles of API.md: a user is a driver, a merchant or ops (staff)."""

from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist
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


def role_conflict(user, role: str) -> str | None:
    """Why `user` cannot be given a `role` (a driver or merchant profile, or staff), if it already holds another
    role; None if it may. An account has one role: a driver profile added to a merchant's account made its token a
    driver's too (its logins answered role `driver`, and it could go online and accept offers), and one added to a
    staff account took the ops API away from it. Asked by the profiles' `clean` and the create_* commands alike
    (the console's add forms make a new account: `core.admin_bases.NewAccountForm`)."""
    held = [name for name in ("driver", "merchant") if _has_profile(user, name)] + (["ops"] if user.is_staff else [])
    other = next((name for name in held if name != role), None)
    if other is None:
        return None
    return f"{user.get_username()} already holds the {other} role: a {role} needs an account of its own."


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
    """Staff, holding the model permission the view names in `ops_permission`: the one the matching admin
    action requires, so the API grants nothing the console would refuse (a view-only user gets 403)."""

    role = "ops"
    message = "This needs the ops role and the permission for this action."

    def has_permission(self, request, view) -> bool:
        permission = getattr(view, "ops_permission", None)
        if not permission:
            raise ImproperlyConfigured(f"{type(view).__name__} uses IsOps without naming its ops_permission")
        return role_of(request.user) == "ops" and request.user.has_perm(permission)


# The ops group (`manage.py create_ops`): every permission of Relay's own apps except deleting, which the
# console offers nowhere (records are cancelled, resolved or deactivated instead). Beat schedules are not
# Relay's: changing one can stop offer expiry for everyone, so only superusers edit them.
OPS_GROUP = "ops"
OPS_APPS = ["core", "zones", "drivers", "deliveries", "analytics"]


def ops_group() -> Group:
    """The ops group with exactly its permissions (created or brought up to date)."""
    group, _ = Group.objects.get_or_create(name=OPS_GROUP)
    group.permissions.set(
        Permission.objects.filter(content_type__app_label__in=OPS_APPS).exclude(codename__startswith="delete_")
    )
    return group
