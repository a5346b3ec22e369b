"""DICOM nodes in the Django admin: an organization's administrator registers the PACS and
modalities that send to it, with clear errors for what cannot work, and sees no one else's."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts.models import Location, User
from dimse.models import DicomNode, clean_ae_title, parse_host
from dimse.services import host_matches
from tests.accounts.helpers import HttpsClient, make_device, plain_static_storage, verified_login

pytestmark = pytest.mark.django_db

ADD = reverse("admin:dimse_dicomnode_add")
LIST = reverse("admin:dimse_dicomnode_changelist")


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    plain_static_storage(settings)


@pytest.fixture
def dana_client(dana):
    client = HttpsClient()
    verified_login(client, dana, make_device(dana))
    return client


@pytest.fixture
def root_client():
    root = User.objects.create_superuser("root", "root@example.org", "correct-horse-battery")
    client = HttpsClient()
    verified_login(client, root, make_device(root))
    return client


def change_url(node: DicomNode) -> str:
    return reverse("admin:dimse_dicomnode_change", args=[node.pk])


def node_form(org, location, **changes) -> dict:
    data = {
        "organization": str(org.pk),
        "ae_title": "CT_ROOM_2",
        "host": "",
        "location": str(location.pk),
        "is_active": "on",
        "description": "CT scanner, room 2",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def errors_of(response) -> str:
    assert response.status_code == 200, "the form was expected back with errors"
    return str(response.context["adminform"].form.errors)


# --- The administrator's story --------------------------------------------------------------


def test_dana_registers_a_modality_that_files_into_radiology(dana_client, org, location):
    response = dana_client.post(ADD, node_form(org, location, host=" 10.20.30.40 "))

    assert response.status_code == 302, errors_of(response)
    node = DicomNode.objects.get()
    assert (node.organization, node.location, node.ae_title) == (org, location, "CT_ROOM_2")
    assert node.host == "10.20.30.40" and node.is_active


def test_dana_sees_and_changes_only_her_organizations_nodes(dana_client, org, location, other_org):
    imaging = Location.objects.create(organization=other_org, name="Imaging")
    theirs = DicomNode.objects.create(organization=other_org, ae_title="RC_PACS", location=imaging)
    ours = DicomNode.objects.create(organization=org, ae_title="SE_PACS", location=location)

    listing = dana_client.get(LIST)
    form_page = dana_client.get(ADD)

    assert "SE_PACS" in listing.text and "RC_PACS" not in listing.text
    assert dana_client.get(change_url(ours)).status_code == 200
    # The admin's answer for an object outside the queryset: back to the list.
    assert dana_client.get(change_url(theirs)).status_code == 302
    form = form_page.context["adminform"].form
    assert list(form.fields["organization"].queryset) == [org]
    assert list(form.fields["location"].queryset) == [location]


def test_dana_cannot_file_a_node_into_another_organization(dana_client, org, location, other_org):
    imaging = Location.objects.create(organization=other_org, name="Imaging")

    response = dana_client.post(ADD, node_form(other_org, imaging))

    assert "Select a valid choice" in errors_of(response)
    assert not DicomNode.objects.exists()


def test_a_clinician_made_staff_gets_no_node_admin(org, alice):
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    client = HttpsClient()
    verified_login(client, alice, make_device(alice))

    assert client.get(LIST).status_code == 403
    assert client.get(ADD).status_code == 403


def test_a_superuser_sees_every_organizations_nodes(root_client, org, location, other_org):
    imaging = Location.objects.create(organization=other_org, name="Imaging")
    DicomNode.objects.create(organization=other_org, ae_title="RC_PACS", location=imaging)
    DicomNode.objects.create(organization=org, ae_title="SE_PACS", location=location)

    listing = root_client.get(LIST)

    assert "SE_PACS" in listing.text and "RC_PACS" in listing.text


# --- What the form refuses, and why -----------------------------------------------------------


@pytest.mark.parametrize(
    ("ae_title", "message"),
    [
        ("", "This field is required."),
        ("   ", "This field is required."),
        ("A_VERY_LONG_AE_TITLE", "at most 16 characters"),
        ("CT\\ROOM", "without backslash or control characters"),
        ("SCANNERÉ", "without backslash or control characters"),
    ],
)
def test_an_impossible_ae_title_is_explained(root_client, org, location, ae_title, message):
    response = root_client.post(ADD, node_form(org, location, ae_title=ae_title))

    errors_of(response)
    [error] = response.context["adminform"].form.errors["ae_title"]
    assert message in error


def test_ae_title_spaces_around_it_do_not_count_as_in_dicom(root_client, org, location):
    response = root_client.post(ADD, node_form(org, location, ae_title="  CT ROOM 2 "))

    assert response.status_code == 302
    assert DicomNode.objects.get().ae_title == "CT ROOM 2"


def test_a_host_that_is_no_address_network_or_name_is_explained(root_client, org, location):
    response = root_client.post(ADD, node_form(org, location, host="10.0.0.300/99 or so"))

    assert "Enter an IP address (192.0.2.10), a network (192.0.2.0/28)" in errors_of(response)


def test_the_receiving_location_must_be_the_nodes_organizations(
    root_client, org, location, other_org
):
    imaging = Location.objects.create(organization=other_org, name="Imaging")

    response = root_client.post(ADD, node_form(org, imaging))

    assert "Choose a location of St. Elsewhere Hospital" in errors_of(response)


def test_two_active_nodes_cannot_share_an_ae_title_even_across_organizations(
    root_client, org, location, other_org
):
    imaging = Location.objects.create(organization=other_org, name="Imaging")
    DicomNode.objects.create(organization=other_org, ae_title="PACS", location=imaging)

    refused = root_client.post(ADD, node_form(org, location, ae_title="PACS"))
    inactive = root_client.post(ADD, node_form(org, location, ae_title="PACS", is_active=None))

    assert "Another active DICOM node already uses this AE title" in errors_of(refused)
    assert "Riverside" not in errors_of(refused)
    assert inactive.status_code == 302
    assert DicomNode.objects.filter(ae_title="PACS").count() == 2


# --- The rules themselves ---------------------------------------------------------------------


def test_ae_title_rules():
    assert clean_ae_title(" PORTAL ") == "PORTAL"
    assert clean_ae_title("A" * 16) == "A" * 16
    for bad in ("", "A" * 17, "TAB\tAE", "BACK\\SLASH"):
        with pytest.raises(ValidationError):
            clean_ae_title(bad)


def test_host_rules_and_matching():
    assert parse_host("") is None
    assert str(parse_host("192.0.2.10")) == "192.0.2.10/32"
    assert str(parse_host("192.0.2.7/28")) == "192.0.2.0/28"
    assert parse_host("PACS.Hospital.example.") == "pacs.hospital.example"
    for bad in ("999.1.1.1", "pacs_1.example", "-pacs", "a b"):
        with pytest.raises(ValidationError):
            parse_host(bad)

    assert host_matches("", "203.0.113.9")
    assert host_matches("192.0.2.10", "192.0.2.10")
    assert host_matches("192.0.2.10", "::ffff:192.0.2.10")  # IPv4 seen through an IPv6 socket
    assert not host_matches("192.0.2.10", "192.0.2.11")
    assert host_matches("192.0.2.0/28", "192.0.2.14")
    assert not host_matches("192.0.2.0/28", "192.0.2.16")
    assert host_matches("localhost", "127.0.0.1")
    assert not host_matches("localhost", "192.0.2.10")
    assert not host_matches("no-such-host.invalid", "127.0.0.1")
    assert not host_matches("192.0.2.10", "not an address")
