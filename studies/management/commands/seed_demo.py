"""``manage.py seed_demo``: load the demo organizations, accounts and studies (studies.demo)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from studies import demo


class Command(BaseCommand):
    help = (
        "Load the demo organizations, accounts (password 'demo-portal') and studies. Idempotent: "
        "a second run adds nothing. Runs only with DEMO_MODE=true."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--small",
            action="store_true",
            help="The same studies with a few tiny slices each: loads in seconds.",
        )

    def handle(self, *args, small: bool, verbosity: int, **options):
        if not settings.DEMO_MODE:
            raise CommandError(
                "seed_demo creates accounts whose password is published in the README, so it "
                "runs only with DEMO_MODE=true (which needs DEBUG=true). `make run` sets both."
            )
        progress = self.stdout.write if verbosity >= 1 else None
        try:
            summary = demo.seed_demo(small=small, progress=progress)
        except demo.DemoError as exc:
            raise CommandError(str(exc)) from exc
        if verbosity >= 1:
            self.stdout.write(demo.format_summary(summary), ending="")
