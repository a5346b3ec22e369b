"""``manage.py verify_audit``: prove the audit trail was not changed, reordered or cut.

Exit status 0 and ``OK: N events verified`` when every chain is intact (an AUDIT_VERIFIED event
is then appended), 1 and one line per break otherwise, so cron or monitoring can alert on it.

``--checkpoints [FILE]`` also checks every checkpoint published outside the database (by default
``AUDIT_CHECKPOINT_FILE``): its signature, and that its chain still holds at least that many
events, the one at that count having that hash. This is what catches whoever holds the audit key
and rewrote history anyway, or deleted the newest events or a whole chain with its head.
"""

import getpass

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from audit.checkpoints import Checkpoint
from audit.checkpoints import read as read_checkpoints
from audit.models import Action
from audit.selectors import CHECKPOINT_INVALID, VerificationResult, verify_chain
from audit.services import record


def _operator() -> str:
    # The account that ran the check, for the trail; containers may have no passwd entry.
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user} (manage.py verify_audit)"[:150]


class Command(BaseCommand):
    help = "Verify the audit trail's hash chains; exit status 1 if any event was altered or lost."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=2000,
            help="Events fetched per database round trip (default 2000).",
        )
        parser.add_argument(
            "--checkpoints",
            nargs="?",
            const="",
            default=None,
            metavar="FILE",
            help="Also check the published checkpoints (default file: AUDIT_CHECKPOINT_FILE).",
        )

    def handle(
        self, *args: object, chunk_size: int, checkpoints: str | None, **options: object
    ) -> None:
        if chunk_size < 1:
            raise CommandError(_("--chunk-size must be at least 1."))
        published: list[Checkpoint] = []
        invalid: list[tuple[int, str]] = []
        if checkpoints is not None:
            path = checkpoints or settings.AUDIT_CHECKPOINT_FILE
            try:
                published, invalid = read_checkpoints(path)
            except OSError as exc:
                raise CommandError(
                    _("cannot read the checkpoints %(path)s: %(error)s")
                    % {"path": path, "error": exc.strerror or exc},
                    returncode=2,
                ) from exc
        result = verify_chain(chunk_size=chunk_size, checkpoints=published)
        for line, reason in invalid:
            result.add(
                CHECKPOINT_INVALID,
                _("checkpoint invalid (line %(line)s): %(reason)s")
                % {"line": line, "reason": reason},
            )
        if not result.ok:
            for chain_break in result.breaks:
                self.stderr.write(str(chain_break))
            if result.unreported:
                self.stderr.write(
                    _("… and %(count)s more breaks not listed.") % {"count": result.unreported}
                )
            raise CommandError(
                _("audit chain broken: %(breaks)s problems found in %(count)s events")
                % {"breaks": result.break_count, "count": result.count},
                returncode=1,
            )
        # Only an intact chain is attested: a broken one must not gain a fresh "verified" link.
        details = {"count": result.count}
        if checkpoints is not None:
            details["checkpoints"] = result.checkpoints_matched
        record(
            action=Action.AUDIT_VERIFIED,
            actor_label=_operator(),
            target_type="audit_trail",
            details=details,
        )
        self.stdout.write(_summary(result, with_checkpoints=checkpoints is not None))


def _summary(result: VerificationResult, *, with_checkpoints: bool) -> str:
    if not with_checkpoints:
        return _("OK: %(count)s events verified") % {"count": result.count}
    return _("OK: %(count)s events verified, %(checkpoints)s checkpoints matched") % {
        "count": result.count,
        "checkpoints": result.checkpoints_matched,
    }
