"""The permissions a Role bundles. Their labels are the names users know from the manuals and
appear in the role editor exactly so, translated like every other text of the interface."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Perm(models.TextChoices):
    VIEW_STUDIES = "studies.view", _("Studies: view and search studies list")
    VIEW_ALL_STUDIES = "studies.view_all", _("Studies: view every study of the organization")
    UPLOAD_STUDIES = "studies.upload", _("Studies: upload studies")
    ORGANIZE_FOLDERS = (
        "studies.organize_folders",
        _("Studies: create, rename and delete folders, and file studies in them"),
    )
    WRITE_REPORTS = "studies.write_report", _("Studies: write reports")
    SHARE_STUDY = "studies.share", _("Studies: share a study")
    SHARE_EMAIL = "studies.share_email", _("Studies: share study via email")
    SHARE_GROUPS = "studies.share_groups", _("Studies: share study with groups")
    SHARE_LOCATIONS = "studies.share_locations", _("Studies: share study with locations")
    SHARE_USERS = "studies.share_users", _("Studies: share study with users")
    CREATE_LINKS = "links.create", _("Study links: create guest links")
    VIEW_LINKS = "links.view", _("Study links: view guest links")
    DELETE_LINKS = "links.delete", _("Study links: delete guest links")
    REVOKE_ANY_LINK = "links.revoke_any", _("Study links: revoke any link (administrators)")
    ADMINISTER = "org.administer", _("Organization: administer (audit trail, unblock shares)")


CLINICIAN = [
    Perm.VIEW_STUDIES,
    Perm.UPLOAD_STUDIES,
    Perm.ORGANIZE_FOLDERS,
    Perm.WRITE_REPORTS,
    Perm.SHARE_STUDY,
    Perm.SHARE_EMAIL,
    Perm.SHARE_GROUPS,
    Perm.SHARE_LOCATIONS,
    Perm.SHARE_USERS,
    Perm.CREATE_LINKS,
    Perm.VIEW_LINKS,
    Perm.DELETE_LINKS,
]
ADMINISTRATOR = [*CLINICIAN, Perm.VIEW_ALL_STUDIES, Perm.REVOKE_ANY_LINK, Perm.ADMINISTER]
