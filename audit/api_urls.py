from django.urls import path

from audit import api

urlpatterns = [
    path("audit/", api.AuditTrailView.as_view(), name="api-audit"),
]
