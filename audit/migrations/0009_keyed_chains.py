"""The audit chain becomes keyed (HMAC under AUDIT_KEY) and splits into one chain per
organization, each with its own head.

Events recorded before this migration keep their plain SHA-256 hashes (``key_id`` stays NULL) and
stay one chain: the head that counted them moves to LEGACY_CHAIN (-1) and is sealed here with the
audit key, so that nobody can later extend that unkeyed chain, or pass keyed events off as
unkeyed ones, without the key. Run ``manage.py verify_audit`` before upgrading: what the unkeyed
chain already held when it was sealed is only as trustworthy as a plain hash chain, which anyone
with write access to the database could have recomputed.

On SQLite, adding a nullable column without a default is an ALTER TABLE: the audit event table is
not rebuilt, so the append-only triggers of 0002 stay in place. The chain head table, which has no
triggers, may be rebuilt.
"""

from django.db import migrations, models

from audit import signing

LEGACY_CHAIN = -1
# Before this migration the one chain head was the row with primary key 1.
OLD_HEAD = 1


def seal_legacy_chain(apps, schema_editor):
    ChainHead = apps.get_model("audit", "ChainHead")
    old = ChainHead.objects.filter(chain=OLD_HEAD).first()
    if old is None:
        return
    # Its key is organization 1's chain from now on.
    old.delete()
    if old.count:
        ChainHead.objects.create(
            chain=LEGACY_CHAIN,
            last_hash=old.last_hash,
            count=old.count,
            seal=signing.seal_head(LEGACY_CHAIN, old.count, old.last_hash),
        )


def unseal_legacy_chain(apps, schema_editor):
    ChainHead = apps.get_model("audit", "ChainHead")
    AuditEvent = apps.get_model("audit", "AuditEvent")
    if AuditEvent.objects.filter(key_id__isnull=False).exists():
        raise RuntimeError(
            "Keyed audit events exist: the trail cannot go back to one unkeyed chain."
        )
    legacy = ChainHead.objects.filter(chain=LEGACY_CHAIN).first()
    ChainHead.objects.all().delete()
    if legacy is not None:
        ChainHead.objects.create(chain=OLD_HEAD, last_hash=legacy.last_hash, count=legacy.count)


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0008_dicom_network_actions'),
    ]

    operations = [
        migrations.AddField(
            model_name='auditevent',
            name='key_id',
            field=models.CharField(blank=True, max_length=16, null=True),
        ),
        migrations.RenameField(
            model_name='chainhead',
            old_name='id',
            new_name='chain',
        ),
        migrations.AlterField(
            model_name='chainhead',
            name='chain',
            field=models.BigIntegerField(primary_key=True, serialize=False),
        ),
        migrations.AddField(
            model_name='chainhead',
            name='seal',
            field=models.CharField(blank=True, max_length=80),
        ),
        migrations.AddField(
            model_name='chainhead',
            name='checkpointed_count',
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.RunPython(seal_legacy_chain, unseal_legacy_chain),
    ]
