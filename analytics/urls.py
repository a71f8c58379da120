from django.urls import path

from analytics.api import KpiView

urlpatterns = [path("ops/kpis", KpiView.as_view(), name="ops-kpis")]
