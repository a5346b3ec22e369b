from django.urls import path

from sharing import api

urlpatterns = [
    path("shares/", api.ShareListCreateView.as_view(), name="api-shares"),
    path("shares/<int:pk>/", api.ShareDetailView.as_view(), name="api-share"),
]
