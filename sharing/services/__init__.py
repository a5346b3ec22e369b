"""The sharing app's actions. One module per capability, and callers import from the module
that owns what they use (``from sharing.services.shares import share_studies``):

- ``shares``: share studies, the terms the Share dialog offers, remove a share;
- ``entries``: the worklist entries a share gives each recipient, and when they end;
- ``study_items``: what a share's messages say about its studies;
- ``favorites``: the sender's starred recipients;
- ``two_factor``: the SMS code that opens a share asking for it, its lockout and unblock;
- ``invitations``: an email share to an address without an account, activated on registration;
- ``trail``: the audit events of a share, one per study.
"""
