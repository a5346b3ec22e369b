from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = _("Accounts and organizations")

    def ready(self) -> None:
        from django_otp.plugins.otp_totp.models import TOTPDevice

        from accounts.memberships import administered_organization_ids
        from accounts.models import ApiToken, Group, Location, Membership, Organization, Role, User
        from audit.selectors import register_trail_organizations
        from portal import decisions

        # Who a token is and what a user may reach depend on these (portal.decisions); the
        # answers about accounts alone (a token, memberships, devices) on nothing else.
        accounts = decisions.ACCOUNTS
        decisions.watch(
            User, Organization, Role, Membership, Location, Group, ApiToken, TOTPDevice,
            scope=accounts,
        )  # fmt: skip
        decisions.watch_relation(Membership.locations.through, scope=accounts)
        decisions.watch_relation(Membership.groups.through, scope=accounts)
        # An organization's administrators read its audit trail.
        register_trail_organizations(administered_organization_ids)
