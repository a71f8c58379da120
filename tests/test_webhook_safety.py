"""Webhooks go where the merchant said and nowhere else: no redirects, no private addresses (unless the
deployment allows them), and no call longer than the time limit."""

import logging
import socket
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from core import outbound
from deliveries import webhooks
from deliveries.models import Merchant, WebhookDelivery
from deliveries.services.creation import create_delivery
from deliveries.tasks import send_webhook
from tests import factories
from tests.conftest import sweep_webhooks_every_minute

pytestmark = pytest.mark.django_db


def _webhook_to(url: str) -> WebhookDelivery:
    merchant = factories.MerchantFactory(webhook_url=url)
    create_delivery(merchant=merchant, data=factories.delivery_payload())
    return WebhookDelivery.objects.get(merchant=merchant)


def test_a_redirect_is_not_followed(zones, receivers, clock):
    elsewhere = receivers()
    redirecting = receivers(status=302, headers={"Location": elsewhere.url})
    webhook = _webhook_to(redirecting.url)

    send_webhook.apply(args=[str(webhook.pk)])
    sweep_webhooks_every_minute(clock, minutes=24 * 60)  # every retry

    assert elsewhere.requests == []  # neither a GET nor a POST, and so never our signature
    assert [request.method for request in redirecting.requests] == ["POST"] * webhooks.MAX_ATTEMPTS
    webhook.refresh_from_db()
    assert webhook.status == "failed"
    assert "302 redirect" in webhook.last_error and "not followed" in webhook.last_error


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/hook",
        "http://localhost:{port}/hook",
        "http://[::1]:{port}/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:{port}/hook",
        "http://0.0.0.0:{port}/hook",
        # IPv4 carried in IPv6, delivered by the kernel or a translating gateway (NAT64, 6to4)
        "http://[::7f00:1]:{port}/hook",
        "http://[::ffff:0:7f00:1]:{port}/hook",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://[64:ff9b:1::a9fe:a9fe]/latest/meta-data/",
        "http://[2002:a9fe:a9fe::1]/latest/meta-data/",
        "http://[2002:c0a8:a::1]:8080/hook",
        "http://[fec0::1]/hook",  # site-local: an inside network's, though Python 3.11 calls it global
    ],
)
def test_private_addresses_are_refused_unless_allowed(zones, receivers, settings, target):
    settings.RELAY_WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    receiver = receivers()
    webhook = _webhook_to(target.format(port=receiver.server.server_port))

    send_webhook.apply(args=[str(webhook.pk)])

    assert receiver.requests == []
    webhook.refresh_from_db()
    assert (webhook.status, webhook.attempts) == ("failed", 1)  # refused for good: no retries
    assert "non-public address" in webhook.last_error


def test_the_allowing_setting_lets_a_local_receiver_be_called(zones, receivers, settings):
    settings.RELAY_WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    receiver = receivers()
    webhook = _webhook_to(receiver.url.replace("127.0.0.1", "localhost"))
    send_webhook.apply(args=[str(webhook.pk)])
    webhook.refresh_from_db()
    assert webhook.status == "sent"
    request = receiver.requests[0]
    assert (request.method, request.path) == ("POST", "/hook")
    # the name, though we dialled the address
    assert request.headers["Host"] == f"localhost:{receiver.server.server_port}"


def test_a_credential_in_the_webhook_url_is_not_written_to_the_log(zones, receivers, settings, caplog):
    """Merchants put a credential in their webhook URL (`?token=`, `user:password@`) for their receiver to check:
    httpx logged every attempt's URL, credential included, in the webhook worker's log (at INFO, the default)."""
    settings.RELAY_WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    receiver = receivers()
    webhook = _webhook_to(receiver.url.replace("http://", "http://shop:pa55word@") + "?token=s3cret")
    with caplog.at_level(logging.INFO):
        send_webhook.apply(args=[str(webhook.pk)])
    webhook.refresh_from_db()
    assert webhook.status == "sent" and receiver.requests[0].path == "/hook?token=s3cret"
    assert "s3cret" not in caplog.text and "pa55word" not in caplog.text


def test_only_http_urls_are_called(zones):
    webhook = _webhook_to("ftp://shop.example/hook")
    send_webhook.apply(args=[str(webhook.pk)])
    webhook.refresh_from_db()
    assert (webhook.status, webhook.attempts) == ("failed", 1)
    assert "not an http(s) URL" in webhook.last_error


def test_a_url_webhooks_cannot_be_sent_to_is_refused_when_it_is_given(admin_client, zones):
    """The console and create_merchant saved an ftp:// URL (or, in the command, any text): each of the merchant's
    webhooks then failed at its first attempt, and ops learned of it from the failed list, not from the form."""
    merchant = factories.MerchantFactory(webhook_url="https://shop.example/hook")
    url = reverse("admin:deliveries_merchant_change", args=[merchant.pk])
    page = admin_client.post(
        url, {"user": merchant.user_id, "name": merchant.name, "webhook_url": "ftp://shop.example/hook"}
    )
    assert page.status_code == 200  # the form again, holding what was typed
    form = page.context["adminform"].form
    assert (
        form.errors["webhook_url"] == ["Enter a valid URL."] and form.data["webhook_url"] == "ftp://shop.example/hook"
    )
    with pytest.raises(CommandError, match=r"--webhook-url shop\.example/hook: Enter a valid URL"):
        call_command("create_merchant", "new-shop", password="pass-123456", webhook_url="shop.example/hook")
    merchant.refresh_from_db()
    assert merchant.webhook_url == "https://shop.example/hook"
    assert not Merchant.objects.filter(user__username="new-shop").exists()


class Trickle:
    """A receiver that answers one byte every 0.2 s, for up to 20 s: each read is quick, the answer endless."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        connection, _ = self.listener.accept()
        with connection:
            connection.recv(65536)
            deadline = time.monotonic() + 20
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                if self.stop.wait(0.2) or time.monotonic() > deadline:
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return  # the client gave up

    def close(self):
        self.stop.set()
        self.listener.close()


def test_one_time_limit_covers_the_whole_call(zones, settings):
    settings.RELAY_WEBHOOK_TIMEOUT_S = 1
    trickle = Trickle()
    try:
        webhook = _webhook_to(trickle.url)
        started = time.monotonic()
        with pytest.raises(outbound.Failed, match="no complete answer within 1 s"):
            webhooks.post_webhook(webhook)
        assert time.monotonic() - started < 10  # the receiver would have kept it going for 20 s
    finally:
        trickle.close()


class EndlessBody:
    """A receiver that answers 200 and then sends a body without end (a merchant's server that returns gigabytes)."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.stop = threading.Event()
        self.sent = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        connection, _ = self.listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
            while not self.stop.wait(0.005):
                try:
                    connection.sendall(chunk)
                except OSError:
                    return  # the client hung up
                self.sent += 65536

    def close(self):
        self.stop.set()
        self.listener.close()


def test_the_answers_body_is_not_read(zones, settings):
    """Only the status counts. The whole body was read into the worker's memory, as fast as the receiver sent it,
    for up to the time limit (and an endless one made a delivered webhook fail and be sent again)."""
    settings.RELAY_WEBHOOK_TIMEOUT_S = 3
    endless = EndlessBody()
    try:
        webhook = _webhook_to(endless.url)
        started = time.monotonic()
        assert webhooks.post_webhook(webhook) is None
        assert time.monotonic() - started < 1
    finally:
        endless.close()
