"""Operations: settings from the environment, the deploy check, and the management commands."""

import io
import json
import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from drivers.models import Driver
from tests.conftest import DEMO_ZONES
from zones.models import Zone

ROOT = Path(__file__).resolve().parent.parent


def manage(*args, **env):
    ours = ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "SECURE_SSL_REDIRECT", "RELAY_PUBLIC_URL")
    base = {k: v for k, v in os.environ.items() if k not in ours}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base | env, capture_output=True, text=True, timeout=120
    )


PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "relay.example.com",
    "RELAY_PUBLIC_URL": "https://relay.example.com",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/relay",
}


def test_the_deploy_check_passes_with_production_variables():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_the_deploy_check_warns_of_tracking_links_to_this_machine():
    """Left at its default, RELAY_PUBLIC_URL made every tracking link a merchant handed its customers point at
    127.0.0.1, and nothing said so."""
    env = {k: v for k, v in PRODUCTION.items() if k != "RELAY_PUBLIC_URL"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", **env)
    assert result.returncode != 0
    assert "relay.W001" in result.stderr and "RELAY_PUBLIC_URL is http://127.0.0.1:8000" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "0"}, "SECRET_KEY must be set"),
        ({"DEBUG": "maybe"}, "DEBUG must be a boolean"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must start with"),
        ({"DB_CONN_MAX_AGE": "ten"}, "DB_CONN_MAX_AGE must be an integer"),
        ({"RELAY_WEBHOOK_RETENTION_DAYS": "0"}, "RELAY_WEBHOOK_RETENTION_DAYS must be at least 1, got '0'"),
        (
            {
                "DB_PREPARE_THRESHOLD": "soon",
                "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/relay_nowhere",
                "DEBUG": "1",
            },
            "DB_PREPARE_THRESHOLD must be an integer",
        ),
    ],
)
def test_bad_settings_stop_the_process_with_a_clear_message(env, message):
    result = manage("check", **env)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("env", "debug"),
    [
        ({}, "True"),  # the embedded mode on its own SQLite file: a machine on a desk
        ({"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/relay_nowhere", "SECRET_KEY": "s" * 50}, "False"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/9", "SECRET_KEY": "s" * 50}, "False"),
        ({"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/relay_nowhere", "DEBUG": "1"}, "True"),
    ],
)
def test_debug_is_off_unless_the_database_is_the_embedded_sqlite(env, debug):
    result = manage("shell", "-c", "from django.conf import settings; print(settings.DEBUG)", **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == debug


@pytest.mark.parametrize(("value", "threshold"), [(None, "5"), ("0", "0"), ("none", "None"), ("off", "None")])
def test_postgresql_statements_are_prepared_unless_turned_off(value, threshold):
    env = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/relay_nowhere", "DEBUG": "1"}
    if value is not None:
        env["DB_PREPARE_THRESHOLD"] = value
    show = "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS']['prepare_threshold'])"
    result = manage("shell", "-c", show, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == threshold


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_statement_run_often_on_a_connection_is_prepared_there(zones):
    from django.db import connection

    for _ in range(6):
        assert Zone.objects.filter(code="centro").exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall()]
    assert 'SELECT $1 AS "a" FROM "zones_zone" WHERE "zones_zone"."code" = $2 LIMIT 1' in prepared


def test_a_postgresql_deployment_without_a_secret_key_refuses_to_start():
    result = manage("check", DATABASE_URL="postgres://postgres@127.0.0.1:5432/relay_nowhere")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.django_db
def test_load_zones_creates_then_updates(tmp_path):
    out = io.StringIO()
    call_command("load_zones", str(DEMO_ZONES), stdout=out)
    assert Zone.objects.count() == 3
    assert Zone.objects.get(code="este").offer_timeout_s == 45
    assert set(Zone.objects.get(code="centro").neighbours.values_list("code", flat=True)) == {"norte", "este"}
    changed = json.loads(DEMO_ZONES.read_text())
    changed["features"][0]["properties"]["search_radius_km"] = 7.5
    path = tmp_path / "zones.geojson"
    path.write_text(json.dumps(changed))
    call_command("load_zones", str(path), stdout=out)
    assert Zone.objects.count() == 3
    assert Zone.objects.get(code="centro").search_radius_km == 7.5


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f["properties"].pop("code"), "needs 'code'"),
        (lambda f: f["properties"].update(offer_timeout=3), "unknown properties"),
        (lambda f: f["geometry"]["coordinates"][0].pop(), "closed"),
        (lambda f: f["properties"].update(neighbours=["atlantis"]), "unknown neighbours"),
    ],
)
def test_load_zones_refuses_bad_files_and_loads_nothing(tmp_path, mutate, message):
    collection = json.loads(DEMO_ZONES.read_text())
    mutate(collection["features"][0])
    path = tmp_path / "zones.geojson"
    path.write_text(json.dumps(collection))
    with pytest.raises(CommandError, match=message):
        call_command("load_zones", str(path), stdout=io.StringIO())
    assert Zone.objects.count() == 0


@pytest.mark.django_db
def test_account_commands(zones):
    out = io.StringIO()
    call_command("create_driver", "ana", "--password", "pw-123456", "--zone", "norte", "--vehicle", "car", stdout=out)
    driver = Driver.objects.get(user__username="ana")
    assert (driver.home_zone.code, driver.vehicle, driver.state) == ("norte", "car", "offline")
    with pytest.raises(CommandError, match="no zone"):
        call_command("create_driver", "ben", "--password", "pw", "--zone", "nowhere", stdout=out)
    call_command("create_merchant", "shop", "--password", "pw-123456", "--webhook-url", "https://x.test/h", stdout=out)
    assert "webhook secret" in out.getvalue()
    call_command("create_ops", "olga", "--password", "pw-123456", stdout=out)
    from django.contrib.auth import get_user_model

    olga = get_user_model().objects.get(username="olga")
    assert olga.is_staff and olga.has_perm("deliveries.change_escalation")


def test_serve_refuses_several_processes_in_embedded_mode():
    result = manage("serve", "--workers", "2")
    assert result.returncode != 0
    assert "--workers needs production mode" in result.stderr


def test_the_demo_names_its_accounts_once_beside_its_links(db):
    """The accounts were printed twice (by the setup step and again by the demo), apart from the links they log
    in to."""
    from deliveries.management.commands.demo import Command

    out = io.StringIO()
    call_command("demo", "--setup-only", "--drivers", "3", stdout=out)
    assert out.getvalue().strip() == "demo zones and accounts ready"
    banner = io.StringIO()
    options = {"log": Path("demo.log"), "speedup": 5, "rate": 6}
    Command(stdout=banner).banner("http://127.0.0.1:8750", options, Path("demo-fleet.log"), ["d1", "d3"])
    text = banner.getvalue()
    assert "admin console  http://127.0.0.1:8750/admin/" in text
    assert "API accounts   merchant" in text and "drivers d1…d3" in text
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    assert f"policy replay  .venv/bin/python manage.py replay --day {yesterday} --set offer_timeout_s=15" in text
