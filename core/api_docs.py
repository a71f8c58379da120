"""The API docs pages, drf-spectacular's Swagger UI and Redoc (served from drf-spectacular-sidecar), under the
site's Content-Security-Policy: no inline script, and inline styles only where Redoc's bundle makes them."""

from csp.constants import SELF
from csp.decorators import csp_update
from django.utils.decorators import method_decorator
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView

# Redoc's bundle adds perfect-scrollbar's stylesheet as a <style> element as soon as it loads, before Redoc.init can
# hand it the page's nonce: that element is allowed by the hashes of its text and of the empty element it starts as.
# Another bundle (drf-spectacular-sidecar is pinned in requirements.lock) with other CSS fails
# tests/test_browser_csp.py::test_the_api_docs_work_under_the_policy until these follow it.
REDOC_BUNDLE_STYLES = [
    "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='",
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
]
# Redoc runs its search index in a worker it makes from a blob of its own code.
REDOC_WORKERS = [SELF, "blob:"]


class SwaggerUIView(SpectacularSwaggerSplitView):
    """Swagger UI's settings come from a script of its own (`?script`), not inline; the page's styles from a file."""

    template_name = "relay/swagger_ui.html"


@method_decorator(csp_update({"style-src": REDOC_BUNDLE_STYLES, "worker-src": REDOC_WORKERS}), name="get")
class RedocView(SpectacularRedocView):
    """Redoc without its web fonts and inline script (templates/relay/redoc.html)."""

    template_name = "relay/redoc.html"
