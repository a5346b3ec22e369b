# dd/mm/yyyy, as the manuals write dates (portal/formats/common.py).
from portal.formats.common import *  # noqa: F403
