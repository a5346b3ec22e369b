from django.apps import AppConfig


class StudiesConfig(AppConfig):
    name = "studies"
    verbose_name = "Studies and worklists"

    def ready(self) -> None:
        from portal import decisions
        from studies.models import Entry, Instance, Series, Study, Worklist

        # What a principal may reach of a study depends on these (portal.decisions); a stored
        # series or instance never changes what it is, it can only go.
        decisions.watch(Study, Worklist, Entry)
        decisions.watch(Series, Instance, saves=False)
