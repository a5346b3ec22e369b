"""The outbox: every email and SMS the portal sends is a Message row, written in the transaction
of the action that causes it and delivered by Celery after commit (see ``services`` for queueing,
``delivery`` for sending, ``tasks`` for the workers and the periodic re-queue)."""
