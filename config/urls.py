from django.contrib import admin
from django.urls import include, path

from core.api import LogoutView, TokenView
from core.api_docs import RedocView, SwaggerUIView
from core.schema import SchemaView
from core.views import favicon, healthz, metrics_view, readyz
from deliveries.views import ops_board, tracking_page

api_v1 = [
    path("auth/token", TokenView.as_view(), name="auth-token"),
    path("auth/logout", LogoutView.as_view(), name="auth-logout"),
    path("", include("deliveries.urls")),
    path("", include("analytics.urls")),
]

urlpatterns = [
    # Staff only, exactly as the admin decides it (a non-staff visitor is sent to the admin login).
    path("ops/board/", admin.site.admin_view(ops_board), name="ops-board"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SwaggerUIView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", RedocView.as_view(url_name="schema"), name="api-redoc"),
    path("metrics", metrics_view, name="metrics"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("t/<str:token>", tracking_page, name="tracking-page"),
    # Browsers ask every site for it: without it each page view logged a 404.
    path("favicon.ico", favicon),
]
