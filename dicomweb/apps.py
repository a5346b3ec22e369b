from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DicomwebConfig(AppConfig):
    name = "dicomweb"
    verbose_name = _("DICOMweb")
