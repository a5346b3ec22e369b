"""The demo's organizations, roles and accounts (``manage.py seed_demo`` loads them with the
studies of :mod:`studies.demo`), declared once: the seed, its summary and the login page's list of
demo accounts all read them from here.

The password is public (README): the demo runs only with ``DEMO_MODE`` on, which the settings allow
only with ``DEBUG``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from accounts.models import OrganizationKind
from accounts.permissions import ADMINISTRATOR, CLINICIAN

DEMO_PASSWORD = "demo-portal"  # noqa: S105 - published in the README on purpose

ST_ELSEWHERE = "St. Elsewhere Hospital"
RIVERSIDE = "Riverside Clinic"


# --- Organizations, roles, users -------------------------------------------------------------


@dataclass(frozen=True)
class DemoOrganization:
    name: str
    kind: str
    locations: tuple[str, ...]
    groups: tuple[str, ...] = ()


ORGANIZATIONS = (
    DemoOrganization(
        ST_ELSEWHERE,
        OrganizationKind.HOSPITAL,
        locations=("Radiology", "Emergency"),
        groups=("Neuroradiology", "Cardiology"),
    ),
    DemoOrganization(RIVERSIDE, OrganizationKind.CLINIC, locations=("Imaging",)),
)

# Global roles (organization=None): every organization's memberships may use them.
ROLES = {"Clinician": CLINICIAN, "Administrator": ADMINISTRATOR}


@dataclass(frozen=True)
class DemoUser:
    username: str
    first_name: str
    last_name: str
    organization: str
    role: str
    # Who the account is: printed in the summary and listed on the login page (translated).
    who: str | Promise
    email: str
    language: str
    locations: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    physician_number: str = ""
    mobile: str = ""
    email_public: bool = False
    mobile_public: bool = False
    is_staff: bool = False


USERS = (
    DemoUser(
        "alice",
        "Alice",
        "Martin",
        ST_ELSEWHERE,
        "Clinician",
        who=_("Clinician at St. Elsewhere Hospital: Radiology location, Neuroradiology group"),
        email="alice@st-elsewhere.example",
        language="en",
        locations=("Radiology",),
        groups=("Neuroradiology",),
        physician_number="RIZIV-10001",
        # Public, so that the Share dialog's search by mobile number and by email finds her.
        mobile="+32470000001",
        email_public=True,
        mobile_public=True,
    ),
    DemoUser(
        "bob",
        "Bob",
        "Janssens",
        ST_ELSEWHERE,
        "Clinician",
        # The README promises bob in the Neuroradiology group; the Emergency location and the
        # Cardiology group give him studies alice does not have, for sharing between them.
        who=_(
            "Clinician at St. Elsewhere Hospital: Emergency location, Neuroradiology and "
            "Cardiology groups"
        ),
        email="bob@st-elsewhere.example",
        language="nl",
        locations=("Emergency",),
        groups=("Neuroradiology", "Cardiology"),
        physician_number="RIZIV-10002",
        mobile="+32470000002",
    ),
    DemoUser(
        "dana",
        "Dana",
        "Dubois",
        ST_ELSEWHERE,
        "Administrator",
        who=_(
            "Administrator of St. Elsewhere Hospital (all its studies) and of the administration "
            "site; administrators must use two-factor authentication, so the portal asks her to "
            "set it up first"
        ),
        email="dana@st-elsewhere.example",
        language="fr",
        mobile="+32470000003",
        is_staff=True,
    ),
    DemoUser(
        "carol",
        "Carol",
        "Weber",
        RIVERSIDE,
        "Clinician",
        who=_("Clinician at Riverside Clinic (Imaging location), the second organization"),
        email="carol@riverside-clinic.example",
        language="de",
        locations=("Imaging",),
        physician_number="BIG-20001",
        mobile="+491701234567",
    ),
)
