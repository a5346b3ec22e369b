"""The sharing app's pages: the Share dialog, the SMS two-factor gate of shares, the invitation
to register from an email share, the organization administrators' blocked-shares page, and
the Shares page where senders and administrators remove shares."""

from sharing.views import dialog, invitation, sent, status, two_factor

app_name = "sharing"

urlpatterns = [
    *dialog.urlpatterns,
    *two_factor.urlpatterns,
    *invitation.urlpatterns,
    *status.urlpatterns,
    *sent.urlpatterns,
]
