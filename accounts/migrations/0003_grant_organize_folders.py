"""Folders became a named permission. Roles that could already upload studies (the clinicians
and administrators of existing organizations) may organize folders, as new clinician roles do;
other roles gain nothing until an administrator grants it in the role editor."""

from django.db import migrations

ORGANIZE_FOLDERS = "studies.organize_folders"
UPLOAD_STUDIES = "studies.upload"


def grant(apps, schema_editor):
    Role = apps.get_model("accounts", "Role")
    for role in Role.objects.all():
        if UPLOAD_STUDIES in role.permissions and ORGANIZE_FOLDERS not in role.permissions:
            role.permissions = [*role.permissions, ORGANIZE_FOLDERS]
            role.save(update_fields=["permissions"])


def revoke(apps, schema_editor):
    Role = apps.get_model("accounts", "Role")
    for role in Role.objects.all():
        if ORGANIZE_FOLDERS in role.permissions:
            role.permissions = [p for p in role.permissions if p != ORGANIZE_FOLDERS]
            role.save(update_fields=["permissions"])


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_two_factor_policy_token_lifetime_login_addresses")]

    operations = [migrations.RunPython(grant, revoke)]
