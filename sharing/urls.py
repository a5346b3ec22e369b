"""The sharing app's pages: the Share dialog, the SMS two-factor gate of shares, the invitation
to register from an email share, and the organization administrators' blocked-shares page."""

from sharing.views import dialog, invitation, status, two_factor

app_name = "sharing"

urlpatterns = [
    *dialog.urlpatterns,
    *two_factor.urlpatterns,
    *invitation.urlpatterns,
    *status.urlpatterns,
]
