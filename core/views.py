from django.http import HttpResponse

from core import metrics


def metrics_view(request):
    return HttpResponse(metrics.render_prometheus(), content_type="text/plain; version=0.0.4")
