from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DimseConfig(AppConfig):
    name = "dimse"
    verbose_name = _("DICOM nodes")

    def seed_demo(self, world) -> list[str]:
        """This app's part of ``manage.py seed_demo`` (see studies.demo)."""
        from dimse.demo import ensure_demo_node

        return ensure_demo_node(world)
