"""Audit events (append-only on PostgreSQL), idempotency records and the beat schedule that closes sockets with
revoked credentials: core 0001-0004 squashed.

A database migrated with those four (all recorded in django_migrations) sees this one as applied. Left out of the
squash: 0003 also took beat and delete permissions from an `ops` group made by an earlier `create_ops`; a fresh
database has no such group."""

import django.utils.timezone
import uuid
from django.db import migrations, models

from core.schedules import interval_schedules

# On PostgreSQL, refuse UPDATE and DELETE of audit events even in raw SQL (SPEC 3.2). TRUNCATE stays possible for an
# operator (and for the test runner's flush); the ORM refuses it too.
CREATE_AUDIT_TRIGGER = """
CREATE OR REPLACE FUNCTION relay_audit_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER core_auditevent_append_only
    BEFORE UPDATE OR DELETE ON core_auditevent
    FOR EACH ROW EXECUTE FUNCTION relay_audit_event_append_only();
"""

DROP_AUDIT_TRIGGER = """
DROP TRIGGER IF EXISTS core_auditevent_append_only ON core_auditevent;
DROP FUNCTION IF EXISTS relay_audit_event_append_only();
"""


def create_audit_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE_AUDIT_TRIGGER, params=None)


def drop_audit_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_AUDIT_TRIGGER, params=None)


class Migration(migrations.Migration):

    replaces = [
        ('core', '0001_initial'),
        ('core', '0002_audit_append_only_trigger'),
        ('core', '0003_socket_credential_checks'),
        ('core', '0004_audit_payload_values'),
    ]

    initial = True

    dependencies = [
        ('django_celery_beat', '0019_alter_periodictasks_options'),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditEvent',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('uuid', models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ('occurred_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ('type', models.CharField(db_index=True, max_length=64)),
                ('actor_kind', models.CharField(choices=[('system', 'System'), ('driver', 'Driver'), ('ops', 'Ops'), ('merchant', 'Merchant')], max_length=16)),
                ('actor_id', models.CharField(blank=True, max_length=64)),
                ('subject_kind', models.CharField(max_length=16)),
                ('subject_id', models.UUIDField()),
                ('delivery_id', models.UUIDField(blank=True, db_index=True, null=True)),
                ('driver_id', models.UUIDField(blank=True, db_index=True, null=True)),
                ('from_state', models.CharField(blank=True, max_length=32)),
                ('to_state', models.CharField(blank=True, max_length=32)),
                ('payload', models.JSONField(blank=True, default=dict)),
            ],
            options={
                'ordering': ['id'],
                'indexes': [models.Index(fields=['subject_kind', 'subject_id'], name='core_audite_subject_6dfd0a_idx')],
            },
        ),
        migrations.CreateModel(
            name='IdempotencyRecord',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('caller', models.CharField(max_length=64)),
                ('key', models.CharField(max_length=255)),
                ('fingerprint', models.CharField(max_length=64)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('expires_at', models.DateTimeField(db_index=True)),
                ('completed', models.BooleanField(default=False)),
                ('status_code', models.PositiveSmallIntegerField(null=True)),
                ('content_type', models.CharField(blank=True, max_length=128)),
                ('body', models.BinaryField(null=True)),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('caller', 'key'), name='idempotency_unique_caller_key')],
            },
        ),
        migrations.RunPython(create_audit_trigger, drop_audit_trigger),
        interval_schedules([
            # (name, task, every seconds)
            ("Close sockets with revoked credentials", "core.tasks.recheck_socket_credentials", 30),
        ]),
    ]
