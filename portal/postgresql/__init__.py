"""PostgreSQL through Django's own backend, with a connection health check that needs no round
trip (``portal.postgresql.base``)."""
