"""/metrics (SPEC 5 system metrics, API.md Operations): Prometheus text that prometheus_client's own parser
reads, summed over every process of a deployment, for ops and scrapers only; /healthz and /readyz."""

import io
import os
import subprocess
import sys

import httpx
import pytest
from celery import shared_task
from django.core.management import call_command
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect

from config.celery import app
from core.audit import Actor
from core.processes import stop_process
from deliveries.services import offers
from deliveries.tasks import dispatch_delivery_task, dispatch_waiting_deliveries
from tests import factories
from tests.polling import eventually
from tests.servers import ROOT, free_port, production_env, running_server

SYSTEM_METRICS = {
    "relay_assignment_latency_seconds",  # created → first offer, created → assigned
    "relay_offers",  # by outcome
    "relay_dispatch_duration_seconds",
    "relay_location_searches",  # by the index that answered: database = fell back
    "relay_location_fallbacks",
    "relay_unassigned_deliveries",  # by zone
    "relay_oldest_unassigned_age_seconds",  # by zone
    "relay_open_escalations",  # by level
    "relay_celery_task_duration_seconds",
}


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of a scrape, read by prometheus_client's parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def families(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


@pytest.mark.django_db
def test_metrics_list_the_system_metrics_and_move_when_work_happens(merchant, ops_user, client, clock):
    client.force_login(ops_user)
    before = samples(client.get("/metrics").content.decode())
    driver = factories.online_driver(*factories.east(0.5))
    delivery = factories.new_delivery(merchant, "m1")
    clock.shift(12)
    offers.accept_offer(factories.pending_offer(delivery).pk, actor=Actor.driver(driver))
    factories.new_delivery(merchant, "m2")  # nobody left: waits, unassigned
    dispatch_delivery_task.delay(str(delivery.pk))  # a Celery task (eager here) is timed too
    clock.shift(30)

    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/plain")
    text = answer.content.decode()
    assert families(text) >= SYSTEM_METRICS
    after = samples(text)

    def moved(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("relay_offers_total", outcome="created") == 1
    assert moved("relay_offers_total", outcome="accepted") == 1
    assert moved("relay_assignment_latency_seconds_count", stage="assigned") == 1
    assert moved("relay_assignment_latency_seconds_sum", stage="assigned") == pytest.approx(12)
    assert moved("relay_assignment_latency_seconds_count", stage="first_offer") == 1
    assert moved("relay_dispatch_duration_seconds_count") >= 2
    assert (
        moved("relay_location_searches_total", index="redis") + moved("relay_location_searches_total", index="database")
        >= 2
    )
    assert moved("relay_celery_task_duration_seconds_count", task="deliveries.tasks.dispatch_delivery_task") == 1
    assert after[("relay_unassigned_deliveries", (("zone", "centro"),))] == 1
    assert after[("relay_oldest_unassigned_age_seconds", (("zone", "centro"),))] == pytest.approx(30)
    assert after[("relay_open_escalations", (("level", "2"),))] == 1  # nobody in reach: ops alerted at once


@pytest.mark.django_db
def test_metrics_refuse_anonymous_and_non_ops_callers(merchant, client, settings, ops_user):
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    merchant_token = Token.objects.create(user=merchant.user).key
    answer = client.get("/metrics", headers={"Authorization": f"Token {merchant_token}"})
    assert answer.status_code == 403 and answer.json()["code"] == "permission_denied"
    ops_token = Token.objects.create(user=ops_user).key
    assert client.get("/metrics", headers={"Authorization": f"Token {ops_token}"}).status_code == 200
    settings.RELAY_METRICS_TOKEN = "scrape-secret-0123456789"
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-0123456789"}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    settings.RELAY_METRICS_PUBLIC = True
    assert client.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_healthz_answers_and_readyz_checks_the_services(client, settings):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and all(ready.json()["checks"].values())
    # Load balancers probe with HEAD as often as with GET: it was 405.
    assert (client.head("/healthz").status_code, client.head("/readyz").status_code) == (200, 200)


@pytest.mark.redis
@pytest.mark.django_db
def test_readyz_is_503_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["redis"] is False and answer.json()["status"] == "unavailable"


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_two_server_processes_add_up_in_every_scrape(zones, settings, tmp_path):
    call_command("create_merchant", "shop", "--password", "secret-pass-123", stdout=io.StringIO())
    driver = factories.online_driver(*factories.CENTRO)
    driver_token = Token.objects.create(user=driver.user).key
    scrape_token = "scrape-secret-0123456789"
    env = production_env(settings) | {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "METRICS_TOKEN": scrape_token,
    }
    (tmp_path / "metrics").mkdir()
    with (
        running_server(env, tmp_path / "a.log") as first,
        running_server(env, tmp_path / "b.log") as second,
    ):
        merchant_token = httpx.post(
            f"{first}/api/v1/auth/token", json={"username": "shop", "password": "secret-pass-123"}
        ).json()["token"]
        for n, url in enumerate([first, first, second, second, second]):  # 2 on one process, 3 on the other
            answer = httpx.post(
                f"{url}/api/v1/deliveries",
                json=factories.delivery_payload(f"sum-{n}"),
                headers={"Authorization": f"Token {merchant_token}"},
            )
            assert answer.status_code == 201, answer.text
        ws_url = second.replace("http", "ws") + f"/ws/driver/?token={driver_token}"
        with connect(ws_url):
            scrapes = [
                samples(httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {scrape_token}"}).text)
                for url in (first, second)
            ]
        for scraped in scrapes:
            assert scraped[("relay_dispatch_duration_seconds_count", ())] == 5
            assert scraped[("relay_offers_total", (("outcome", "created"),))] == 1  # one driver: the first job
            assert scraped[("relay_websocket_connections", (("kind", "driver"),))] == 1
            assert scraped[("relay_unassigned_deliveries", (("zone", "centro"),))] == 5  # offered is unassigned too
            assert scraped[("relay_redis_up", ())] == 1
        anonymous = httpx.get(f"{first}/metrics")
        assert anonymous.status_code == 401
    assert "Traceback" not in (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_celery_workers_task_metrics_show_in_the_servers_scrape(zones, settings, tmp_path):
    queue = f"metrics-test-{tmp_path.name}"  # a queue of its own: nothing else queued in this Redis reaches it
    env = production_env(settings) | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "METRICS_PUBLIC": "1"}
    (tmp_path / "metrics").mkdir()
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "-c", "2", "-l", "warning"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    app.conf.task_always_eager = False
    try:
        with running_server(env, tmp_path / "server.log") as url:
            for _ in range(3):
                dispatch_waiting_deliveries.apply_async(queue=queue)
            key = (
                "relay_celery_task_duration_seconds_count",
                (("task", "deliveries.tasks.dispatch_waiting_deliveries"),),
            )

            def counted() -> bool:
                return samples(httpx.get(f"{url}/metrics").text).get(key) == 3

            assert eventually(counted, timeout_s=60), (tmp_path / "worker.log").read_text()[-2000:]
    finally:
        app.conf.task_always_eager = True
        stop_process(worker)
    # Ended, the server and the worker's processes (its pool's included) left their counts, not their files.
    assert _archived_only(tmp_path / "metrics")[key] == 3


RECORD_A_FAILURE = (
    "import django; django.setup(); "
    "from core.task_metrics import TASK_FAILURES; TASK_FAILURES.labels(task='tests.ended').inc()"
)


def test_ended_processes_keep_their_counts_in_one_archive_not_a_file_each(tmp_path):
    """Every process that imports Relay (server and Celery worker processes, beat, each `manage.py` command) writes
    its samples to files of its own in the host's metric directory. Kept once it ended, they piled up, a pair per
    restart, deploy and command, and every scrape read them all."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(directory), "DJANGO_SETTINGS_MODULE": "config.settings"}
    for _ in range(3):
        subprocess.run([sys.executable, "-c", RECORD_A_FAILURE], env=env, cwd=ROOT, check=True)
    assert _archived_only(directory)[("relay_celery_task_failures_total", (("task", "tests.ended"),))] == 3


def _archived_only(directory) -> dict[tuple, float]:
    """The samples of a metric directory that holds nothing but the archive of ended processes."""
    assert sorted(path.name for path in directory.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return samples(generate_latest(registry).decode())


@shared_task(name="tests.failing_task")
def failing_task():
    raise RuntimeError("this task always fails")


@pytest.mark.django_db
def test_a_failing_celery_task_is_counted(client, ops_user):
    client.force_login(ops_user)
    key = ("relay_celery_task_failures_total", (("task", "tests.failing_task"),))
    before = samples(client.get("/metrics").content.decode()).get(key, 0)
    assert failing_task.apply().failed()
    assert samples(client.get("/metrics").content.decode())[key] == before + 1
