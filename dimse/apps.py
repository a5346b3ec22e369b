from django.apps import AppConfig


class DimseConfig(AppConfig):
    name = "dimse"
    verbose_name = "DICOM nodes"

    def seed_demo(self, world) -> list[str]:
        """This app's part of ``manage.py seed_demo`` (see studies.demo)."""
        from dimse.demo import ensure_demo_node

        return ensure_demo_node(world)
