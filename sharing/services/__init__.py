"""The sharing app's actions. One module per capability:

- ``shares``: share studies, remove a share;
- ``favorites``: the sender's starred recipients;
- ``two_factor``: the SMS code that opens a share asking for it, its lockout and unblock;
- ``invitations``: an email share to an address without an account, activated on registration.

Callers import from the module that owns the action; this package re-exports the share actions
the REST API and tests have always used.
"""

from sharing.services.shares import (
    MAX_LABEL_LENGTH,
    MAX_MESSAGE_LENGTH,
    MAX_REASON_LENGTH,
    MAX_RECIPIENTS,
    Recipient,
    ShareOptions,
    ShareTerms,
    end_of_day,
    may_remove_share,
    remove_share,
    share_studies,
    share_terms,
    summary_of,
)

__all__ = [
    "MAX_LABEL_LENGTH",
    "MAX_MESSAGE_LENGTH",
    "MAX_REASON_LENGTH",
    "MAX_RECIPIENTS",
    "Recipient",
    "ShareOptions",
    "ShareTerms",
    "end_of_day",
    "may_remove_share",
    "remove_share",
    "share_studies",
    "share_terms",
    "summary_of",
]
