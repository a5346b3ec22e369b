"""DICOMweb (PS3.18) under /dicomweb/: QIDO-RS, WADO-RS (with rendered and thumbnail), STOW-RS.

UIDs are matched as plain path segments; every view looks them up through ``dicomweb.scope``.
"""

from django.urls import path

from dicomweb import qido, rendered, stow, wado
from dicomweb.http import by_method

app_name = "dicomweb"

_STUDY = "studies/<str:study_uid>"
_SERIES = f"{_STUDY}/series/<str:series_uid>"
_INSTANCE = f"{_SERIES}/instances/<str:instance_uid>"

urlpatterns = [
    # QIDO-RS searches (GET) and the STOW-RS store (POST) share the collection paths.
    path("studies", by_method(get=qido.search_studies, post=stow.store), name="studies"),
    path("series", qido.search_series, name="all_series"),
    path("instances", qido.search_instances, name="all_instances"),
    path(f"{_STUDY}/series", qido.search_series, name="study_series"),
    path(f"{_STUDY}/instances", qido.search_instances, name="study_instances"),
    path(f"{_SERIES}/instances", qido.search_instances, name="series_instances"),
    # WADO-RS retrieve, metadata, frames and bulk data.
    path(_STUDY, by_method(get=wado.retrieve, post=stow.store), name="study"),
    path(_SERIES, wado.retrieve, name="series"),
    path(_INSTANCE, wado.retrieve, name="instance"),
    path(f"{_STUDY}/metadata", wado.metadata, name="study_metadata"),
    path(f"{_SERIES}/metadata", wado.metadata, name="series_metadata"),
    path(f"{_INSTANCE}/metadata", wado.metadata, name="instance_metadata"),
    path(f"{_INSTANCE}/frames/<str:frame_list>", wado.frames, name="frames"),
    path(f"{_INSTANCE}/bulkdata/<path:tag_path>", wado.bulkdata, name="bulkdata"),
    # Rendered images and thumbnails at every level.
    path(f"{_STUDY}/rendered", rendered.rendered, name="study_rendered"),
    path(f"{_SERIES}/rendered", rendered.rendered, name="series_rendered"),
    path(f"{_INSTANCE}/rendered", rendered.rendered, name="instance_rendered"),
    path(f"{_INSTANCE}/frames/<int:frame>/rendered", rendered.rendered, name="rendered_frame"),
    path(f"{_STUDY}/thumbnail", rendered.thumbnail, name="study_thumbnail"),
    path(f"{_SERIES}/thumbnail", rendered.thumbnail, name="series_thumbnail"),
    path(f"{_INSTANCE}/thumbnail", rendered.thumbnail, name="instance_thumbnail"),
    path(f"{_INSTANCE}/frames/<int:frame>/thumbnail", rendered.thumbnail, name="frame_thumbnail"),
]
