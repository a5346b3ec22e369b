"""State changes of guest links: ``creation`` (the sender: create, delete, revoke, the study's
list) and ``opening`` (the recipient: gates, confirmation, SMS codes, grants); ``state`` derives
whether a link still opens."""
