"""The smallest Django project that does what a guest link's page and open do at their core,
served exactly like the portal: the anchor ``bench/link_bench.py`` measures the portal against
(issue 13: the link page at least half its speed, the open at least 0.4 of it).

- ``GET /l/<token>``: one indexed lookup of the token's keyed digest in the portal's own
  ``guestlinks_guestlink`` table, and a page with a form carrying a CSRF token;
- ``POST /l/<token>``: the CSRF check, the same lookup, the link's id written into a new
  session (database sessions, as the portal's), and a 303 to a study address.

No access rules, no audit, no templates, no translations: what is left is Django, the database
and the session write that no guest-link open can avoid.
"""
