from celery import shared_task

from viewers.services import delete_expired_tokens


@shared_task(name="viewers.delete_expired_tokens")
def delete_expired_viewer_tokens() -> int:
    return delete_expired_tokens()
