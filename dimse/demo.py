"""The DIMSE part of ``manage.py seed_demo``: the node ``DEMO_PACS``, whose studies are filed in
St. Elsewhere Hospital's Radiology worklist, so that the README's storescu line works as is.
Applied by :meth:`dimse.apps.DimseConfig.seed_demo`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from accounts.demo import ST_ELSEWHERE
from dimse.models import DicomNode
from studies.demo import DemoWorld

DEMO_AE_TITLE = "DEMO_PACS"
DEMO_LOCATION = "Radiology"


@transaction.atomic
def ensure_demo_node(world: DemoWorld) -> list[str]:
    """Create the demo node, or bring it back to what the README says (active, any address,
    filing into Radiology) if someone changed it in the admin."""
    organization = world.organizations[ST_ELSEWHERE]
    location = world.locations[ST_ELSEWHERE, DEMO_LOCATION]
    wanted = {
        "location": location,
        "host": "",
        "is_active": True,
        "description": "The demo's PACS: send it studies with pynetdicom's storescu (README).",
    }
    node = (
        DicomNode.objects.filter(organization=organization, ae_title=DEMO_AE_TITLE)
        .order_by("pk")
        .first()
    )
    if node is None:
        DicomNode.objects.create(organization=organization, ae_title=DEMO_AE_TITLE, **wanted)
    else:
        changed = [name for name, value in wanted.items() if getattr(node, name) != value]
        if changed:
            for name in changed:
                setattr(node, name, wanted[name])
            node.save(update_fields=[*changed, "updated_at"])
    host, port = settings.DICOM_LISTENER_HOST, settings.DICOM_LISTENER_PORT
    return [
        f"The DICOM listener (make run starts it) is {settings.DICOM_AE_TITLE} at {host}:{port}; "
        f"the node {DEMO_AE_TITLE} files what it sends",
        f"in {ST_ELSEWHERE}'s {DEMO_LOCATION} worklist. Send a folder of DICOM files with:",
        f"  .venv/bin/python -m pynetdicom storescu {host} {port} FOLDER "
        f"-aet {DEMO_AE_TITLE} -aec {settings.DICOM_AE_TITLE} -r -cx",
    ]
