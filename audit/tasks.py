"""Celery tasks of the audit trail: the periodic checkpoint (``CELERY_BEAT_SCHEDULE``)."""

from celery import shared_task

from audit.checkpoints import write_checkpoints


@shared_task(name="audit.write_checkpoints", ignore_result=True)
def publish_checkpoints() -> int:
    """Publish the signed head of every chain that grew since the last run; returns how many."""
    return len(write_checkpoints())
