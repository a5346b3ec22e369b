from django.urls import path

from sharing import api

urlpatterns = [
    path("shares/", api.ShareListCreateView.as_view(), name="api-shares"),
    path("shares/<int:pk>/", api.ShareDetailView.as_view(), name="api-share"),
    path("recipients/", api.RecipientSearchView.as_view(), name="api-recipients"),
    path("favorites/", api.FavoriteListCreateView.as_view(), name="api-favorites"),
    path("favorites/<int:pk>/", api.FavoriteDetailView.as_view(), name="api-favorite"),
]
