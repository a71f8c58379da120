from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.api import LogoutView, TokenView
from core.views import metrics_view
from drivers.api import LocationsView

api_v1 = [
    path("auth/token", TokenView.as_view(), name="auth-token"),
    path("auth/logout", LogoutView.as_view(), name="auth-logout"),
    path("driver/locations", LocationsView.as_view(), name="driver-locations"),
    path("", include("deliveries.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("metrics", metrics_view, name="metrics"),
]
