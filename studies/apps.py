from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class StudiesConfig(AppConfig):
    name = "studies"
    verbose_name = _("Studies and worklists")

    def ready(self) -> None:
        from audit.selectors import register_study_labels
        from portal import decisions
        from studies.audit_labels import study_labels
        from studies.models import Entry, Folder, Instance, Patient, Series, Study, Worklist

        # What a principal may reach of a study, and what a remembered search answers, depend
        # on these (portal.decisions): a search within a folder takes its subfolders' studies.
        # A stored series or instance never changes what it is, it can only go (a new one
        # changes its study's counts, which saves the study).
        decisions.watch(Study, Entry, Patient, Folder)
        # Which worklists a user sees is an answer of the accounts' scope (it rests on
        # memberships, roles and worklists alone): a study arriving leaves it standing.
        decisions.watch(Worklist, scope=decisions.ACCOUNTS)
        # The facts remembered of what is stored (studies.frame_sources) end with its deletion
        # alone; a study's deletion deletes its series and instances one by one, so it ends them
        # too.
        decisions.watch(Series, Instance, saves=False, scope=decisions.STORED)
        register_study_labels(study_labels)
