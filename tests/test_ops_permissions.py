"""Ops rights are the console's model permissions everywhere: the ops REST API and the ops socket ask for the
same permission as the matching admin action, the admin deletes nothing the domain has an action for, and the
ops group made by `create_ops` has no say over the beat schedules."""

import io

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from config.asgi import application
from core.audit import Actor
from core.models import AuditEvent
from core.tokens import issue_token
from deliveries.models import Delivery, DeliveryStatus, Merchant, Offer, OfferStatus, WebhookDelivery
from deliveries.services.availability import start_break
from deliveries.services.creation import create_delivery
from deliveries.services.ladder import run_ladder
from deliveries.tasks import send_webhook
from deliveries.webhooks import sign
from drivers.models import Break, Driver, DriverMessage, Shift
from tests import factories
from tests.conftest import api_client_for
from zones.models import Zone

pytestmark = pytest.mark.django_db


def staff_with(*codenames: str):
    user = factories.UserFactory(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def escalation_id(merchant, clock):
    create_delivery(merchant=merchant, data=factories.delivery_payload("nobody-around"))
    clock.shift(300)
    run_ladder()
    return Delivery.objects.get(external_id="nobody-around").escalations.get().pk


def test_view_only_staff_can_look_but_not_act(escalation_id):
    api = api_client_for(staff_with("view_escalation", "view_delivery", "view_zone"))
    delivery = Delivery.objects.get()
    assert api.get("/api/v1/ops/escalations").status_code == 200
    assert api.get("/api/v1/ops/zones").status_code == 200

    refused = [
        api.post(f"/api/v1/ops/escalations/{escalation_id}/acknowledge"),
        api.post(f"/api/v1/ops/escalations/{escalation_id}/resolve", {"note": "done"}, format="json"),
        api.post(f"/api/v1/ops/deliveries/{delivery.pk}/reassign", {}, format="json"),
    ]
    assert [response.status_code for response in refused] == [403, 403, 403]
    assert refused[0].json()["code"] == "permission_denied"
    assert delivery.escalations.get().status == "open"


def test_staff_without_permissions_see_nothing(escalation_id):
    api = api_client_for(staff_with())
    assert api.get("/api/v1/ops/escalations").status_code == 403
    assert api.get("/api/v1/ops/zones").status_code == 403


def test_each_action_needs_the_permission_of_its_admin_action(escalation_id):
    api = api_client_for(staff_with("view_escalation", "change_escalation"))
    assert api.post(f"/api/v1/ops/escalations/{escalation_id}/acknowledge").status_code == 200
    delivery = Delivery.objects.get()
    assert api.post(f"/api/v1/ops/deliveries/{delivery.pk}/reassign", {}, format="json").status_code == 403


@pytest.mark.django_db(transaction=True)
async def test_the_ops_socket_refuses_staff_who_may_not_view_escalations(zones):
    async def connect(user) -> tuple[bool, int | None]:
        token = await database_sync_to_async(lambda: issue_token(user).key)()
        socket = WebsocketCommunicator(application, f"/ws/ops/?token={token}")
        connected, code = await socket.connect()
        if connected:
            await socket.disconnect()
        return connected, code

    assert await connect(await database_sync_to_async(staff_with)("view_delivery")) == (False, 4403)
    assert (await connect(await database_sync_to_async(staff_with)("view_escalation")))[0]


def test_the_ops_group_has_no_say_over_beat_schedules_and_deletes_nothing(db):
    call_command("create_ops", "olga", "--password", "pw-123456", stdout=io.StringIO())
    from django.contrib.auth import get_user_model

    olga = get_user_model().objects.get(username="olga")
    assert olga.has_perm("deliveries.change_escalation")
    assert olga.has_perm("zones.change_zone")
    assert not olga.has_perm("django_celery_beat.change_periodictask")
    assert not olga.has_perm("django_celery_beat.view_periodictask")
    assert not any(perm.split(".")[1].startswith("delete_") for perm in olga.get_all_permissions())


@pytest.fixture
def every_record(zones, clock):
    """One row of each model the domain changes through its own actions."""
    merchant = factories.MerchantFactory(webhook_url="https://shop.example/hook")
    driver = factories.online_driver(*factories.CENTRO)
    delivery, _ = create_delivery(merchant=merchant, data=factories.delivery_payload("one"))
    resting = factories.online_driver(*factories.NORTE)
    start_break(resting.pk, actor=Actor.driver(resting))
    assert Offer.objects.get(delivery=delivery).status == OfferStatus.PENDING
    return {
        Offer: Offer.objects.get(delivery=delivery),
        Shift: Shift.objects.filter(driver=driver).get(),
        Driver: driver,
        Merchant: merchant,
        WebhookDelivery: WebhookDelivery.objects.filter(delivery=delivery).first(),
        Break: Break.objects.get(driver=resting),
        DriverMessage: DriverMessage.objects.filter(driver=driver).first(),
        Zone: Zone.objects.get(code="centro"),
        Delivery: delivery,
    }


def test_the_admin_deletes_nothing_the_domain_has_an_action_for(client, every_record):
    client.force_login(factories.UserFactory(is_staff=True, is_superuser=True))
    for model, row in every_record.items():
        assert row is not None, model
        meta = model._meta
        delete_url = reverse(f"admin:{meta.app_label}_{meta.model_name}_delete", args=[row.pk])
        assert client.get(delete_url).status_code == 403, meta.label
        assert client.post(delete_url, {"post": "yes"}).status_code == 403, meta.label
        changelist = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert "delete_selected" not in changelist.content.decode(), meta.label
        assert model.objects.filter(pk=row.pk).exists(), meta.label
    offer = every_record[Offer]
    offer.refresh_from_db()
    assert offer.status == OfferStatus.PENDING
    assert Delivery.objects.get().status == DeliveryStatus.OFFERED


def test_shift_times_and_driver_counters_are_read_only_in_the_admin(client, every_record):
    client.force_login(factories.UserFactory(is_staff=True, is_superuser=True))
    shift = every_record[Shift]
    page = client.get(reverse("admin:drivers_shift_change", args=[shift.pk])).content.decode()
    assert 'name="started_at' not in page and 'name="ended_at' not in page
    assert 'name="planned_end' in page  # the plan is what ops edit
    response = client.post(
        reverse("admin:drivers_shift_change", args=[shift.pk]),
        {
            "driver": shift.driver_id,
            "planned_start_0": "",
            "planned_start_1": "",
            "planned_end_0": "2026-11-25",
            "planned_end_1": "18:00:00",
            "started_at_0": "2020-01-01",
            "started_at_1": "00:00:00",
            "ended_at_0": "2026-11-25",
            "ended_at_1": "12:00:00",
        },
    )
    assert response.status_code == 302
    shift.refresh_from_db()
    assert shift.ended_at is None and shift.started_at == timezone.now()
    assert shift.planned_end is not None

    driver_page = client.get(reverse("admin:drivers_driver_change", args=[every_record[Driver].pk])).content.decode()
    assert 'name="state"' not in driver_page and 'name="missed_offers_in_row"' not in driver_page
    merchant_page = client.get(reverse("admin:deliveries_merchant_change", args=[every_record[Merchant].pk]))
    assert 'name="webhook_secret"' not in merchant_page.content.decode()


def test_no_staffer_moves_a_drivers_or_a_merchants_profile_to_another_account(client, merchant):
    """A staffer who may change drivers moved a driver's profile to their own account in the console, then logged in
    to the API as that driver with their own password (accepting and delivering in the driver's name, the driver's
    own token answering 403); the same with a merchant's. A profile is added only to an account with no role yet."""
    rider = factories.online_driver(*factories.CENTRO, name="Rita Rodrigues")
    ops = staff_with("view_driver", "change_driver", "view_merchant", "change_merchant", "add_merchant")
    ops.set_password("ops-pass-123")
    ops.save()
    client.force_login(ops)
    form = {"user": ops.pk, "name": rider.name, "phone": "", "vehicle": "bicycle", "capacity": 1}
    moved = client.post(
        reverse("admin:drivers_driver_change", args=[rider.pk]), form | {"home_zone": rider.home_zone_id}
    )
    assert moved.status_code == 302
    form = {"user": ops.pk, "name": merchant.name, "webhook_url": ""}
    assert client.post(reverse("admin:deliveries_merchant_change", args=[merchant.pk]), form).status_code == 302
    rider.refresh_from_db()
    merchant.refresh_from_db()
    assert rider.user.username != ops.username and merchant.user.username != ops.username

    login = APIClient().post("/api/v1/auth/token", {"username": ops.username, "password": "ops-pass-123"})
    assert login.json()["role"] == "ops"
    assert api_client_for(rider.user).get("/api/v1/driver/me").status_code == 200

    added = client.post(reverse("admin:deliveries_merchant_add"), {"user": ops.pk, "name": "Own Shop"})
    assert added.status_code == 200 and not Merchant.objects.filter(name="Own Shop").exists()


def test_a_merchants_webhook_secret_is_shown_once_to_whoever_makes_it(client, merchant, receivers):
    """Every staffer who could read a merchant's page, view-only ones included, read its signing secret in full:
    enough to sign webhooks the merchant trusts. It is shown when made (on adding, on rotating), then masked."""
    viewer = staff_with("view_merchant")
    client.force_login(viewer)
    page = client.get(reverse("admin:deliveries_merchant_change", args=[merchant.pk])).content.decode()
    assert merchant.webhook_secret not in page and f"…{merchant.webhook_secret[-4:]}" in page

    ops = staff_with("view_merchant", "change_merchant")
    client.force_login(ops)
    changelist = reverse("admin:deliveries_merchant_changelist")
    rotated = client.post(
        changelist, {"action": "rotate_webhook_secret", "_selected_action": [merchant.pk]}, follow=True
    ).content.decode()
    old, merchant_now = merchant.webhook_secret, Merchant.objects.get(pk=merchant.pk)
    assert merchant_now.webhook_secret != old and merchant_now.webhook_secret in rotated  # shown once, here
    page = client.get(reverse("admin:deliveries_merchant_change", args=[merchant.pk])).content.decode()
    assert merchant_now.webhook_secret not in page
    event = AuditEvent.objects.get(type="merchant.webhook_secret_rotated", subject_id=merchant.pk)
    assert event.actor_kind == "ops" and merchant_now.webhook_secret not in str(event.payload)

    # Added in the console: shown once, on the page the save leads to.
    ops.user_permissions.add(Permission.objects.get(codename="add_merchant"))
    added = client.post(
        reverse("admin:deliveries_merchant_add"),
        {"username": "new-shop", "password1": "sells-things-1", "password2": "sells-things-1", "name": "New Shop"},
        follow=True,
    ).content.decode()
    assert Merchant.objects.get(name="New Shop").webhook_secret in added

    # The merchant's webhooks are signed with the new one.
    endpoint = receivers()
    merchant_now.webhook_url = endpoint.url
    merchant_now.save()
    factories.new_delivery(merchant_now, "signed")
    send_webhook.apply(args=[str(WebhookDelivery.objects.get(merchant=merchant_now).pk)])
    signature = endpoint.requests[-1].headers["X-Relay-Signature"]
    timestamp = int(signature.split(",")[0].removeprefix("t="))
    assert signature == sign(merchant_now.webhook_secret, timestamp, endpoint.requests[-1].body.decode())


def test_no_console_page_shows_an_api_token_and_a_superuser_can_still_revoke_one(client, admin_user, merchant):
    keys = [issue_token(merchant.user).key, issue_token(admin_user).key]
    client.force_login(admin_user)
    token_pages = [model for model in admin.site._registry if issubclass(model, Token)]
    assert token_pages  # the console lists tokens, by user
    for model in token_pages:
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        for page in [
            reverse(f"{name}_changelist"),
            reverse(f"{name}_change", args=[merchant.user.pk]),
            reverse(f"{name}_delete", args=[merchant.user.pk]),
        ]:
            shown = client.get(page)
            assert shown.status_code == 200, page
            assert not any(key in shown.content.decode() for key in keys), page
        assert keys[0][-4:] in client.get(reverse(f"{name}_changelist")).content.decode()

        revoked = client.post(reverse(f"{name}_delete", args=[merchant.user.pk]), {"post": "yes"}, follow=True)
        assert keys[0] not in revoked.content.decode()
    assert not Token.objects.filter(user=merchant.user).exists()
    assert api_client_for(merchant.user).get("/api/v1/deliveries").status_code == 200  # a new login works


def test_ops_add_a_driver_and_a_merchant_with_the_accounts_they_log_in_with(client, zones, merchant):
    """Ops staff (not superusers) could not add a driver: the form asked for an existing account, which only a
    superuser can make, and looking one up answered 403. The add form now makes the account; a taken username (a
    merchant's, say: an account has one role) and a password the validators refuse are said on their fields."""
    client.force_login(factories.OpsUserFactory())
    account = {"username": "rita", "password1": "rides-a-bicycle-9", "password2": "rides-a-bicycle-9"}
    driver_form = {"name": "Rita Rodrigues", "phone": "", "vehicle": "bicycle", "home_zone": zones["centro"].pk}
    driver_form |= {"capacity": 1}
    add = reverse("admin:drivers_driver_add")
    assert 'name="username"' in client.get(add).content.decode()

    refusals = [
        (account | {"username": merchant.user.username.upper()}, "username", "is taken"),
        (account | {"password2": "rides-a-bicycle-8"}, "password2", "didn’t match"),
        (account | {"password1": "short", "password2": "short"}, "password2", "too short"),
        (account | {"password1": "password123", "password2": "password123"}, "password2", "too common"),
        (account | {"password1": "3141592653", "password2": "3141592653"}, "password2", "entirely numeric"),
        (
            {"username": "rrodrigues", "password1": "rrodrigues1", "password2": "rrodrigues1"},
            "password2",
            "too similar to the username",
        ),
    ]
    for typed, field, words in refusals:
        page = client.post(add, driver_form | typed)
        assert page.status_code == 200  # the form again, holding what was typed
        form = page.context["adminform"].form
        assert words in form.errors[field][0]
        assert form.data["name"] == "Rita Rodrigues"
    assert not Driver.objects.filter(name="Rita Rodrigues").exists()
    assert Driver.objects.model.user.field.related_model.objects.filter(username="rita").count() == 0

    assert client.post(add, driver_form | account).status_code == 302
    login = APIClient().post(
        reverse("auth-token"), {"username": "rita", "password": "rides-a-bicycle-9"}, format="json"
    )
    assert (login.status_code, login.json()["role"]) == (200, "driver")
    assert Driver.objects.get(user__username="rita").name == "Rita Rodrigues"

    shop = {"username": "bakery", "password1": "bakes-bread-77", "password2": "bakes-bread-77", "name": "Bakery"}
    assert client.post(reverse("admin:deliveries_merchant_add"), shop | {"webhook_url": ""}).status_code == 302
    login = APIClient().post(reverse("auth-token"), {"username": "bakery", "password": "bakes-bread-77"}, format="json")
    assert login.json()["role"] == "merchant"
    login = APIClient().post(
        reverse("auth-token"), {"username": merchant.user.username, "password": factories.PASSWORD}, format="json"
    )
    assert login.json()["role"] == "merchant"  # the merchant's account, refused as "taken", is as it was


def test_the_add_forms_ask_who_then_their_login_and_show_nothing_not_yet_made(client, zones, merchant):
    """The add forms opened on the login fields with Django's "Your password must…" under them, read as the
    staffer's own; they listed a driver's state "Offline" since now, dashes for a position and "Message seq: 0"
    as if the driver already existed; and the merchant's showed the end of a signing secret ("…94f1") that was
    never saved (the saved merchant's is another)."""
    client.force_login(factories.OpsUserFactory())
    pages = {
        "driver": client.get(reverse("admin:drivers_driver_add")).content.decode(),
        "merchant": client.get(reverse("admin:deliveries_merchant_add")).content.decode(),
    }
    for role, html in pages.items():
        assert html.index('name="name"') < html.index("<h2", html.index('name="name"')) < html.index('name="username"')
        assert f"What the {role}" in html  # whose login the fields make
    for made_later in ("State changed at", "Message seq", "Last seen at", "None yet."):
        assert made_later not in pages["driver"]
    assert "How many deliveries the driver carries at once." in pages["driver"]
    assert "signing secret:" not in pages["merchant"] and "Webhook URL" in pages["merchant"]

    taken = client.post(reverse("admin:deliveries_merchant_add"), {"username": merchant.user.username, "name": "Shop"})
    assert taken.context["adminform"].form.errors["username"] == [
        f"“{merchant.user.username}” is taken: choose another (each driver and merchant logs in with an account of its "
        "own)."
    ]


def test_the_create_commands_refuse_an_account_of_another_role(zones, merchant):
    """`create_driver` with a merchant's username made it a driver too, and set a new password on it: the
    merchant's servers were locked out."""
    with pytest.raises(CommandError, match=f"{merchant.user.username} already holds the merchant role"):
        call_command("create_driver", merchant.user.username, password="new-pass-123", zone="centro")
    rider = factories.DriverFactory()
    with pytest.raises(CommandError, match=f"{rider.user.username} already holds the driver role"):
        call_command("create_ops", rider.user.username, password="new-pass-123", stdout=io.StringIO())
    merchant.user.refresh_from_db()
    rider.user.refresh_from_db()
    assert merchant.user.check_password(factories.PASSWORD) and not hasattr(merchant.user, "driver")
    assert not rider.user.is_staff and rider.user.check_password(factories.PASSWORD)


def test_staff_who_may_only_read_merchants_see_webhook_urls_without_their_credential(client):
    """A merchant's webhook URL may hold the credential of its own systems (`user:password@`, `?token=`): every
    staffer given the view permission read it whole. Those who change it (ops) see it whole, as they edit it."""
    shop = factories.MerchantFactory(webhook_url="https://shop:s3cret@hooks.shop.example/relay?token=t0ken&v=2")
    pages = [
        reverse("admin:deliveries_merchant_changelist"),
        reverse("admin:deliveries_merchant_change", args=[shop.pk]),
    ]
    client.force_login(staff_with("view_merchant"))
    for page in pages:
        html = client.get(page).content.decode()
        assert "https://…@hooks.shop.example/relay?token=…&amp;v=…" in html
        assert "s3cret" not in html and "t0ken" not in html

    client.force_login(staff_with("view_merchant", "change_merchant"))
    assert all("s3cret" in client.get(page).content.decode() for page in pages)
