from collections.abc import Callable

from django.http import HttpRequest

from viewers.services import ohif_available


def ohif(request: HttpRequest) -> dict[str, Callable[[], bool]]:
    """``ohif_available`` for templates that offer "Open in OHIF" (the guests' list of studies):
    a callable, so only the pages that ask pay for the look."""
    return {"ohif_available": ohif_available}
