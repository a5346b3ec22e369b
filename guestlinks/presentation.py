"""How a created link is handed over: a ``mailto:`` address for the sender's own mail program
(shown as a QR code for a phone too, drawn by ``portal.qr``), and a short summary of the
options a link was made with.

Nothing here carries patient data: the subject and body of the ``mailto:`` say only that this is
a secure link to a medical study, because mail servers log subjects and phones keep scanned
codes in their history.
"""

from __future__ import annotations

from urllib.parse import quote

from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from guestlinks.models import GuestLink


def mailto_for(*, email: str, url: str, language: str) -> str:
    """A ``mailto:`` URI (RFC 6068) addressed to ``email`` (may be empty) with the link in the
    body, written in the recipient's language."""
    with translation.override(language):
        subject = _("Secure link to a medical study")
        body = "\n".join([_("Here is a secure link to a medical study:"), "", url])
    # Spaces as %20 and line breaks as %0D%0A, as RFC 6068 asks; "@" may stay in the address.
    body = body.replace("\n", "\r\n")
    return (
        f"mailto:{quote(email, safe='@')}"
        f"?subject={quote(subject, safe='')}&body={quote(body, safe='')}"
    )


def options_summary(link: GuestLink) -> list[str]:
    """The options a link was made with, in the words of the Send Link dialog (its uses and
    expiry are shown on their own)."""
    items: list[str] = []
    if link.email:
        items.append(
            _("Emailed to %(email)s") % {"email": link.email}
            if not link.require_email_confirmation
            else _("Confirmation via email to %(email)s") % {"email": link.email}
        )
    if link.mobile:
        items.append(_("Mobile phone %(mobile)s") % {"mobile": link.mobile})
    if link.login_required:
        items.append(_("Login required"))
    if link.password_is_birth_date:
        items.append(_("Password: patient's date of birth"))
    elif link.password_hash:
        items.append(_("Password"))
    if link.max_password_attempts is not None:
        items.append(
            ngettext(
                "%(count)s password attempt",
                "%(count)s password attempts",
                link.max_password_attempts,
            )
            % {"count": link.max_password_attempts}
        )
    if link.sms_code_required:
        items.append(_("Code by SMS"))
    if link.include_priors:
        items.append(_("Priors included"))
    if link.message:
        items.append(_("Message"))
    return items
