"""State changes of guest links: ``creation`` (the sender creates a link), ``ending`` (the
sender deletes it, an administrator revokes it), ``opening`` (the recipient: gates,
confirmation, SMS codes, grants) and ``messages`` (the link's email and SMS); ``state`` derives
whether a link still opens, ``events`` writes their audit events. Reads (targets, who may create
or end links, a study's list) are ``guestlinks.selectors``."""
