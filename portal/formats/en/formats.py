# English dates with the month's name, day first ("4 Dec 2026"): never read the other way round,
# whichever side of the Atlantic the reader is on.
from portal.formats.common import *  # noqa: F403

DATE_FORMAT = SHORT_DATE_FORMAT = "j M Y"
DATETIME_FORMAT = SHORT_DATETIME_FORMAT = "j M Y, H:i"
