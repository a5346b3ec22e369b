"""The Share dialog's form: the parameters of a share and its recipient rows.

The form parses what the sender typed; every rule (the organization's policy, validity bounds,
the mandatory reason and patient agreement, "images only" for users...) is enforced by
``sharing.services.shares.share_studies``, whose field errors come back onto this form. Every
field exists whatever the policy, so that an option the policy disables is refused with an error
rather than silently dropped; the template shows only the allowed ones (:attr:`allowed`).

Recipient rows are not Django fields: a row is ``recipient-<n>-kind`` (user, group, location,
share code, email), ``recipient-<n>-target`` (the chosen user, group or location id),
``recipient-<n>-text`` (what the sender typed: search words, a share code or an address) and
``recipient-<n>-star``. Rows are numbered freely, so the dialog's script adds and removes them
without renumbering, and the server does the same for browsers without scripts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import QueryDict
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from portal.forms import DateField, DateInput, PolicyOptionsForm
from sharing.models import RecipientKind
from sharing.selectors import (
    MAX_QUERY_LENGTH,
    SEARCH_KINDS,
    RecipientQuery,
    RecipientResult,
    recipient_by_id,
    search_recipients,
)
from sharing.services.shares import (
    MAX_LABEL_LENGTH,
    MAX_MESSAGE_LENGTH,
    MAX_REASON_LENGTH,
    MAX_RECIPIENTS,
    Recipient,
    ShareOptions,
    ShareTerms,
)
from studies.models import AccessLevel, LabelScope

ACCESS_CHOICES = [
    (AccessLevel.REPORT_READ.value, _("Images and read access to the report")),
    (AccessLevel.REPORT_WRITE.value, _("Images and write access to the report")),
    (AccessLevel.IMAGES.value, _("Images only")),
]

# Form fields and the organization policy flag that offers each.
POLICY_OF_FIELD = {
    "anonymize": "allow_share_anonymize",
    "two_factor": "allow_share_two_factor",
    "allow_further_sharing": "allow_further_sharing",
}

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

# Keyed by the kinds' values: a row names its kind as text.
PLACEHOLDERS: dict[str, StrOrPromise] = {
    RecipientKind.USER: _("Name, physician number, public mobile or email"),
    RecipientKind.GROUP: _("Group name or organization"),
    RecipientKind.LOCATION: _("Location or organization name"),
    RecipientKind.SHARE_CODE: _("The worklist's share code"),
    RecipientKind.EMAIL: "name@example.org",
}
KIND_LABELS: dict[str, StrOrPromise] = {
    RecipientKind.USER: _("User"),
    RecipientKind.GROUP: _("Group"),
    RecipientKind.LOCATION: _("Location (radiology department)"),
    RecipientKind.SHARE_CODE: _("Worklist share code"),
    RecipientKind.EMAIL: _("Email address"),
}
_ROW_KIND = re.compile(r"^recipient-(\d{1,4})-kind$")


class ShareForm(PolicyOptionsForm):
    access = forms.ChoiceField(
        label=_("Access"),
        choices=ACCESS_CHOICES,
        initial=AccessLevel.REPORT_READ.value,
        widget=forms.RadioSelect,
        help_text=_("“Images only” is not available when sharing with a user."),
    )
    reason = forms.CharField(
        label=_("Reason for sharing"),
        required=False,
        max_length=MAX_REASON_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2, "aria-required": "true"}),
        help_text=_("Mandatory. Never shown to the recipient; recorded in the audit trail."),
    )
    language = forms.ChoiceField(
        label=_("Language of the message"),
        required=False,
        choices=[("", _("Automatic (the recipients' language)")), *settings.LANGUAGES],
        help_text=_(
            "Automatic: the language most recipients read, when more than half of them share "
            "it; otherwise the first recipient's."
        ),
    )
    valid_until = DateField(
        label=_("Valid until"),
        required=False,
        widget=DateInput(attrs={"data-share-valid-until": ""}),
    )
    unlimited = forms.BooleanField(
        label=_("Unlimited access"),
        required=False,
        widget=forms.CheckboxInput(attrs={"data-share-unlimited": ""}),
    )
    patient_agreed = forms.BooleanField(
        label=_("Patient agreed"),
        required=False,
        widget=forms.CheckboxInput(attrs={"aria-required": "true"}),
        help_text=_("Mandatory: without the patient's consent the study may not be shared."),
    )
    label = forms.CharField(
        label=_("Label"),
        required=False,
        max_length=MAX_LABEL_LENGTH,
        help_text=_("Shown with the study in the recipient user's or group's worklist."),
    )
    label_scope = forms.ChoiceField(
        label=_("Label shown"),
        choices=LabelScope.choices,
        initial=LabelScope.GROUP.value,
        required=False,
        widget=forms.RadioSelect,
        help_text=_(
            "For the whole group: every member of a recipient group or location sees the label. "
            "Only for the recipient user: users you share with personally see it, groups and "
            "locations do not."
        ),
    )
    urgent = forms.BooleanField(
        label=_("Urgent"), required=False, help_text=_("Adds “Urgent” to the mail's subject.")
    )
    anonymize = forms.BooleanField(
        label=_("Anonymize"),
        required=False,
        help_text=_(
            "The first name becomes a number and the last name “Anonymous”; the report is never "
            "accessible."
        ),
    )
    allow_further_sharing = forms.BooleanField(
        label=_("Allow further sharing"),
        required=False,
        help_text=_("The recipient may share the study with others, never with more access."),
    )
    message = forms.CharField(
        label=_("Message"),
        required=False,
        max_length=MAX_MESSAGE_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Added to the mail and shown to the recipient with the study."),
    )
    two_factor = forms.BooleanField(
        label=_("SMS two-factor"),
        required=False,
        help_text=_(
            "To open the study the recipient enters a one-time code sent by SMS to their "
            "registered mobile."
        ),
    )
    send_mail = forms.BooleanField(
        label=_("Send mail"),
        required=False,
        help_text=_("The recipient user gets an email with a link to the study and your message."),
    )

    def __init__(self, *args: Any, terms: ShareTerms, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "share-%s")
        super().__init__(*args, **kwargs)
        self.terms = terms
        self.recipient_errors: list[str] = []
        calendar = self.fields["valid_until"].widget
        calendar.attrs["min"] = timezone.localdate()
        if terms.latest_valid_until is not None:
            calendar.attrs["max"] = terms.latest_valid_until
        if not self.is_bound:
            self.fields["valid_until"].initial = terms.default_valid_until
        if terms.latest_valid_until is not None:
            self.fields["valid_until"].help_text = _("At most until %(day)s.") % {
                "day": date_format(terms.latest_valid_until, "DATE_FORMAT")
            }
        else:
            self.fields["valid_until"].help_text = _("Type the date or pick it in the calendar.")
        if terms.anonymized:
            self.fields["anonymize"].help_text = _(
                "The study was shared with you anonymized: it stays anonymized."
            )
        if terms.two_factor_required:
            self.fields["two_factor"].help_text = _(
                "The study was shared with you with SMS two-factor: your recipients need it too."
            )

    @classmethod
    def redisplay(cls, data: QueryDict, *, terms: ShareTerms) -> ShareForm:
        """An unbound form showing what was posted, without errors: for the dialog's own
        buttons (add a recipient, search...) that change the form but share nothing."""
        posted = cls(data, terms=terms)
        initial = {
            name: bound.field.widget.value_from_datadict(data, {}, bound.html_name)
            for name, bound in ((name, posted[name]) for name in posted.fields)
        }
        return cls(initial=initial, terms=terms)

    # --- What the template shows ---------------------------------------------------------

    @property
    def allowed(self) -> dict[str, bool]:
        """Field name -> whether the owning organization's policy offers it."""
        organization = self.terms.organization
        allowed = {
            name: bool(getattr(organization, flag)) for name, flag in POLICY_OF_FIELD.items()
        }
        allowed["unlimited"] = self.terms.unlimited_allowed
        return allowed

    # --- Into the service ------------------------------------------------------------------

    def options(self) -> ShareOptions:
        data = self.cleaned_data
        return ShareOptions(
            access=data["access"],
            reason=data["reason"],
            patient_agreed=data["patient_agreed"],
            valid_until=data["valid_until"],
            unlimited=data["unlimited"],
            language=data["language"] or None,
            label=data["label"],
            label_scope=data["label_scope"] or LabelScope.GROUP,
            urgent=data["urgent"],
            anonymize=data["anonymize"],
            allow_further_sharing=data["allow_further_sharing"],
            message=data["message"],
            two_factor=data["two_factor"],
            send_mail=data["send_mail"],
        )

    def add_service_error(self, name: str, errors: list[ValidationError]) -> None:
        """Recipients' errors beside the recipients; the rest as every option form does."""
        if name in ("recipients", "star"):
            self.recipient_errors.extend(message for error in errors for message in error.messages)
            return
        if name == "access":
            # The error names the recipients that make "Images only" unavailable: the help
            # text would say it twice.
            self["access"].help_text = ""
        super().add_service_error(name, errors)


# --- Recipient rows ----------------------------------------------------------------------------


@dataclass
class RecipientRow:
    """One recipient line of the dialog."""

    index: int
    kind: str
    text: str = ""
    target_id: int | None = None
    star: bool = False
    chosen: RecipientResult | None = None
    is_favorite: bool = False
    # None: not searched; a list (maybe empty): the results of the last search.
    results: list[RecipientResult] | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"recipient-{self.index}"

    @property
    def searchable(self) -> bool:
        return self.kind in SEARCH_KINDS

    @property
    def is_blank(self) -> bool:
        return self.target_id is None and not self.text.strip()

    @property
    def placeholder(self) -> str:
        return str(PLACEHOLDERS.get(self.kind, ""))

    def recipient(self) -> Recipient | None:
        if self.searchable:
            return Recipient(self.kind, self.target_id) if self.target_id is not None else None
        return Recipient(self.kind, self.text.strip()) if self.text.strip() else None


def _int(value: object) -> int | None:
    try:
        number = int(str(value or "").strip())
    except ValueError:
        return None
    return number if 0 < number < 2**31 else None


class RecipientRows:
    """The recipient rows posted (or a first empty one), resolved for display against what the
    sender may reach."""

    def __init__(
        self,
        sender: User,
        terms: ShareTerms,
        data: QueryDict | None = None,
        *,
        favorite_keys: set[str] | None = None,
    ) -> None:
        self.sender = sender
        self.terms = terms
        self.favorite_keys = favorite_keys or set()
        self.rows: list[RecipientRow] = []
        if data is not None:
            indexes = sorted(
                {int(match.group(1)) for key in data if (match := _ROW_KIND.match(key))}
            )
            for index in indexes[:MAX_RECIPIENTS]:
                self.rows.append(self._parse(data, index))
        if not self.rows:
            self.add()

    @property
    def kind_options(self) -> list[dict[str, Any]]:
        """The row's kind menu: each kind's label, placeholder and whether it is searched."""
        return [
            {
                "value": kind,
                "label": KIND_LABELS[kind],
                "placeholder": PLACEHOLDERS[kind],
                "searchable": kind in SEARCH_KINDS,
            }
            for kind in self.terms.recipient_kinds
        ]

    @property
    def template_row(self) -> RecipientRow:
        """The blank row the dialog's script copies for "Add extra recipient"."""
        return RecipientRow(index="__index__", kind=self.default_kind)  # type: ignore[arg-type]

    @property
    def default_kind(self) -> str:
        kinds = self.terms.recipient_kinds
        return kinds[0] if kinds else RecipientKind.USER

    def _parse(self, data: QueryDict, index: int) -> RecipientRow:
        prefix = f"recipient-{index}"
        kind = str(data.get(f"{prefix}-kind") or "").strip()
        if kind not in RecipientKind.values:
            kind = self.default_kind
        row = RecipientRow(
            index=index,
            kind=kind,
            text=str(data.get(f"{prefix}-text") or "")[:254],
            star=bool(data.get(f"{prefix}-star")),
        )
        if row.searchable:
            row.target_id = _int(data.get(f"{prefix}-target"))
            if row.target_id is not None:
                self.choose(row, kind, row.target_id)
        return row

    def choose(self, row: RecipientRow, kind: str, target_id: int) -> None:
        row.kind, row.target_id, row.results, row.text = kind, target_id, None, ""
        row.chosen = recipient_by_id(self.sender, kind, target_id)
        row.is_favorite = f"{kind}:{target_id}" in self.favorite_keys
        if row.chosen is None:
            # Unknown and unreachable alike; the share would refuse it too.
            row.target_id = None
            row.errors.append(str(_("No such recipient. Search again.")))

    def add(self) -> RecipientRow | None:
        if len(self.rows) >= MAX_RECIPIENTS:
            return None
        index = max((row.index for row in self.rows), default=-1) + 1
        row = RecipientRow(index=index, kind=self.default_kind)
        self.rows.append(row)
        return row

    def remove(self, index: str) -> None:
        self.rows = [row for row in self.rows if row.index != _int_or_zero(index)]
        if not self.rows:
            self.add()

    def pick(self, value: str) -> None:
        """``<row>:<kind>:<id>`` (a row's search result) or ``new:<kind>:<id>`` (a favorite or
        a detailed search result: the first empty row, or a new one)."""
        where, _sep, rest = str(value).partition(":")
        kind, _sep, target = rest.partition(":")
        target_id = _int(target)
        if kind not in SEARCH_KINDS or target_id is None:
            return
        row = None
        if where == "new":
            already = next(
                (r for r in self.rows if r.target_id == target_id and r.kind == kind), None
            )
            if already is not None:
                return
            row = next((r for r in self.rows if r.is_blank), None) or self.add()
        else:
            row = next((r for r in self.rows if r.index == _int_or_zero(where)), None)
        if row is not None:
            self.choose(row, kind, target_id)

    def search(self) -> None:
        """Look up every row that names a user, group or location by words but has none
        chosen yet."""
        for row in self.rows:
            if row.searchable and row.target_id is None and row.text.strip():
                row.results = search_recipients(
                    self.sender,
                    RecipientQuery(text=row.text[:MAX_QUERY_LENGTH], kind=row.kind),
                    kinds=self.terms.recipient_kinds,
                )

    def check(self) -> bool:
        """Rows the sender typed words in without choosing a result cannot be shared with: say
        so (and show what the words find) rather than guess."""
        valid = True
        for row in self.rows:
            if row.searchable and row.target_id is None and row.text.strip():
                row.errors.append(str(_("Choose one of the results, or remove this recipient.")))
                valid = False
        if not valid:
            self.search()
        return valid

    def recipients(self) -> list[Recipient]:
        return [r for row in self.rows if (r := row.recipient()) is not None]

    def starred(self) -> list[Recipient]:
        return [
            recipient
            for row in self.rows
            if row.star and row.searchable and (recipient := row.recipient()) is not None
        ]


def _int_or_zero(value: object) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        return -1


_FOUND_KINDS = [
    (RecipientKind.USER.value, _("User")),
    (RecipientKind.GROUP.value, _("Group")),
    (RecipientKind.LOCATION.value, _("Radiology department")),
]


class DetailedSearchForm(forms.Form):
    """The detailed search: one kind and criteria (PACSonWEB "Detailed search")."""

    kind = forms.ChoiceField(label=_("Look for a"), choices=_FOUND_KINDS, required=False)
    name = forms.CharField(label=_("Name"), required=False, max_length=MAX_QUERY_LENGTH)
    physician_number = forms.CharField(label=_("Physician number"), required=False, max_length=40)
    organization = forms.CharField(
        label=_("Organization"), required=False, max_length=MAX_QUERY_LENGTH
    )

    def __init__(self, *args: Any, kinds: tuple[str, ...] = (), **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "find")
        kwargs.setdefault("auto_id", "share-%s")
        super().__init__(*args, **kwargs)
        kind = cast(forms.ChoiceField, self.fields["kind"])  # declared above
        kind.choices = [choice for choice in _FOUND_KINDS if choice[0] in kinds]

    def query(self) -> RecipientQuery:
        data = self.cleaned_data
        return RecipientQuery(
            kind=data["kind"] or None,
            name=data["name"],
            physician_number=data["physician_number"],
            organization=data["organization"],
        )
