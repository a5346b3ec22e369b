"""``manage.py audit_checkpoint``: publish the audit checkpoints now.

Celery beat does it every ``AUDIT_CHECKPOINT_INTERVAL`` seconds (``audit.write_checkpoints``); an
installation without Celery beat (the embedded set-up) runs this from cron instead.
"""

from django.core.management.base import BaseCommand
from django.utils.translation import ngettext

from audit.checkpoints import write_checkpoints


class Command(BaseCommand):
    help = "Append a signed checkpoint of every audit chain that grew to AUDIT_CHECKPOINT_FILE."

    def handle(self, *args: object, **options: object) -> None:
        written = write_checkpoints()
        count = len(written)
        self.stdout.write(
            ngettext("%(count)s checkpoint written", "%(count)s checkpoints written", count)
            % {"count": count}
        )
