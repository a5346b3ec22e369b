"""DICOM nodes: the peers (PACS, modalities, gateways) an organization accepts studies from.

A node is known by the AE title it calls the portal with, optionally pinned to the addresses it
may call from, and names the location whose worklist files what it sends. The listener asks
:func:`dimse.services.accept_association` which node an association request comes from.
"""

from __future__ import annotations

import ipaddress
import re

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from accounts.models import Location, Organization

AE_TITLE_MAX_LENGTH = 16
# Host names as RFC 1123 allows them: labels of letters, digits and hyphens, dot-separated.
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$"
)


def clean_ae_title(value: str) -> str:
    """The AE title as compared on the wire: leading and trailing spaces are not significant
    (PS3.5 6.2, AE). Raises ValidationError when it is not a valid AE title."""
    title = str(value or "").strip(" ")
    if not title:
        raise ValidationError(_("Enter the AE title the node calls the portal with."))
    if len(title) > AE_TITLE_MAX_LENGTH:
        raise ValidationError(
            _("An AE title has at most 16 characters; this one has %(count)d."),
            params={"count": len(title)},
        )
    # The default character repertoire without backslash (the value separator) and controls.
    if any(not (" " <= ch <= "~") or ch == "\\" for ch in title):
        raise ValidationError(
            _(
                "An AE title uses only letters, digits, spaces and ASCII punctuation, without "
                "backslash or control characters."
            )
        )
    return title


def parse_host(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | str | None:
    """A node's host as it is matched: an IP network (an address is a network of one), a host
    name (str) that is resolved at each association, or None when empty. Raises
    ValidationError when it is none of these."""
    host = str(value or "").strip()
    if not host:
        return None
    try:
        return ipaddress.ip_network(host, strict=False)
    except ValueError:
        pass
    if _HOST_NAME.match(host) and not host.replace(".", "").isdigit():
        return host.rstrip(".").lower()
    raise ValidationError(
        _(
            "Enter an IP address (192.0.2.10), a network (192.0.2.0/28) or a host name "
            "(pacs.hospital.example), or leave it empty to accept the node from any address."
        )
    )


class DicomNode(models.Model):
    """A DICOM peer that may send studies to the portal's listener (C-STORE, C-ECHO)."""

    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="dicom_nodes",
        verbose_name=_("organization"),
    )
    ae_title = models.CharField(
        _("AE title"),
        max_length=AE_TITLE_MAX_LENGTH,
        help_text=_(
            "The calling AE title the node sends with (1 to 16 characters, case-sensitive)."
        ),
    )
    host = models.CharField(
        _("host"),
        max_length=255,
        blank=True,
        help_text=_(
            "Optional: the IP address, network (CIDR) or host name the node calls from. When "
            "set, an association from any other address is refused."
        ),
    )
    # RESTRICT: a location still receiving from a node cannot be deleted on its own (the node
    # would file nowhere), but goes with its organization, node included.
    location = models.ForeignKey(
        Location,
        on_delete=models.RESTRICT,
        related_name="dicom_nodes",
        verbose_name=_("receiving location"),
        help_text=_("Studies the node sends are filed in this location's worklist."),
    )
    is_active = models.BooleanField(
        _("active"),
        default=True,
        help_text=_("Only active nodes may open associations."),
    )
    description = models.CharField(_("description"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("DICOM node")
        verbose_name_plural = _("DICOM nodes")
        ordering = ["organization__name", "ae_title"]
        constraints = [
            # A calling AE title names exactly one sender: two active nodes with the same title
            # would leave the listener guessing whose worklist a study belongs in.
            models.UniqueConstraint(
                fields=["ae_title"],
                condition=Q(is_active=True),
                name="dimse_node_unique_active_ae_title",
                violation_error_message=_(
                    "Another active DICOM node already uses this AE title. Each sender needs "
                    "its own AE title; deactivate the other node first if it is being replaced."
                ),
            )
        ]

    def __str__(self) -> str:
        return f"{self.ae_title} ({self.organization.name})"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.ae_title:  # an empty one is the field's own "required" error
            try:
                self.ae_title = clean_ae_title(self.ae_title)
            except ValidationError as error:
                errors["ae_title"] = error.messages
        try:
            parse_host(self.host)
            self.host = self.host.strip()
        except ValidationError as error:
            errors["host"] = error.messages
        if (
            self.location_id is not None
            and self.organization_id is not None
            and self.location.organization_id != self.organization_id
        ):
            errors["location"] = [
                _("Choose a location of %(organization)s: studies are filed in its worklist.")
                % {"organization": self.organization.name}
            ]
        if errors:
            raise ValidationError(errors)
