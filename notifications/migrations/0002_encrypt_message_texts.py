"""Message subjects and bodies are stored encrypted (notifications.encryption): widen the subject
to text (its ciphertext is longer than 255 characters) and encrypt the rows already there.

Reversible: going back decrypts them, which needs the key they were encrypted with."""

from django.db import migrations

import notifications.fields
from notifications.encryption import InvalidToken, decrypt, encrypt

TEXTS = ("subject", "body_text", "body_html")
BATCH = 500


def _already_encrypted(value):
    try:
        decrypt(value)
    except (InvalidToken, ValueError):
        return False
    return True


def _encrypt(value):
    if not value or _already_encrypted(value):
        return value
    return encrypt(value)


def _decrypt(value):
    if not value:
        return value
    try:
        return decrypt(value)
    except (InvalidToken, ValueError) as exc:
        raise RuntimeError(
            "A message text cannot be decrypted with OUTBOX_KEY or its fallbacks; add the key "
            "it was encrypted with to OUTBOX_KEY_FALLBACKS before migrating back."
        ) from exc


def _convert(apps, schema_editor, convert):
    """Rewrite every non-empty text through ``convert``, in batches, with plain SQL: the
    historical model's fields would encrypt and decrypt on their own."""
    table = apps.get_model("notifications", "Message")._meta.db_table
    connection = schema_editor.connection
    quote = connection.ops.quote_name
    columns = ", ".join(quote(name) for name in TEXTS)
    not_empty = " OR ".join(f"{quote(name)} <> ''" for name in TEXTS)
    assignments = ", ".join(f"{quote(name)} = %s" for name in TEXTS)
    last_id = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"SELECT {quote('id')}, {columns} FROM {quote(table)} "  # noqa: S608
                f"WHERE {quote('id')} > %s AND ({not_empty}) ORDER BY {quote('id')} LIMIT %s",
                [last_id, BATCH],
            )
            rows = cursor.fetchall()
            if not rows:
                return
            cursor.executemany(
                f"UPDATE {quote(table)} SET {assignments} WHERE {quote('id')} = %s",  # noqa: S608
                [[convert(text) for text in texts] + [pk] for pk, *texts in rows],
            )
            last_id = rows[-1][0]


def encrypt_texts(apps, schema_editor):
    _convert(apps, schema_editor, _encrypt)


def decrypt_texts(apps, schema_editor):
    _convert(apps, schema_editor, _decrypt)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="message",
            name="subject",
            field=notifications.fields.EncryptedTextField(
                blank=True, max_length=255, verbose_name="subject"
            ),
        ),
        migrations.AlterField(
            model_name="message",
            name="body_text",
            field=notifications.fields.EncryptedTextField(verbose_name="text"),
        ),
        migrations.AlterField(
            model_name="message",
            name="body_html",
            field=notifications.fields.EncryptedTextField(blank=True, verbose_name="HTML"),
        ),
        migrations.RunPython(encrypt_texts, decrypt_texts, elidable=False),
    ]
