from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:  # an app's configuration imports no models while the registry loads
    from studies.demo import DemoWorld


class DimseConfig(AppConfig):
    name = "dimse"
    verbose_name = _("DICOM nodes")

    def seed_demo(self, world: DemoWorld) -> list[str]:
        """This app's part of ``manage.py seed_demo`` (see studies.demo)."""
        from dimse.demo import ensure_demo_node

        return ensure_demo_node(world)
