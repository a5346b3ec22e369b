"""The demo registers the node the README's storescu line calls as: DEMO_PACS, filing into St.
Elsewhere's Radiology worklist, from any address; a second run changes nothing, and an edited
node is put back."""

import pytest

from accounts.demo import ST_ELSEWHERE
from dimse.models import DicomNode
from studies import demo

pytestmark = pytest.mark.django_db


def apply_demo_extensions() -> list[str]:
    organizations, locations, _groups = demo._ensure_organizations()
    return demo._apply_app_extensions(
        demo.DemoWorld(organizations=organizations, locations=locations)
    )


def test_the_demo_registers_demo_pacs_for_st_elsewheres_radiology(settings):
    settings.DICOM_AE_TITLE = "PORTAL"

    notes = apply_demo_extensions()

    node = DicomNode.objects.get()
    assert node.ae_title == "DEMO_PACS" and node.is_active and node.host == ""
    assert (node.organization.name, node.location.name) == (ST_ELSEWHERE, "Radiology")
    assert any(
        "python -m pynetdicom storescu 127.0.0.1 11112 FOLDER -aet DEMO_PACS -aec PORTAL -r -cx"
        in line
        for line in notes
    )


def test_a_second_run_changes_nothing_and_an_edited_node_is_put_back():
    apply_demo_extensions()
    node = DicomNode.objects.get()
    updated = node.updated_at

    apply_demo_extensions()
    node.refresh_from_db()
    assert node.updated_at == updated

    DicomNode.objects.filter(pk=node.pk).update(is_active=False, host="192.0.2.1")
    apply_demo_extensions()
    node.refresh_from_db()
    assert node.is_active and node.host == ""
    assert DicomNode.objects.count() == 1
