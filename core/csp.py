"""The Content-Security-Policy (django-csp, settings.CONTENT_SECURITY_POLICY) on what a browser renders as a page."""

from csp.middleware import CSPMiddleware


class PageCSPMiddleware(CSPMiddleware):
    """django-csp's middleware for HTML answers only: the API's JSON is no document, so a policy on it restricts
    nothing, and building the header cost ~25-50 µs on every request of the API's hot paths (dispatch, accept).
    The API's HTML pages for browsers (DRF's) are HTML, and get it."""

    def process_response(self, request, response):
        if not response.get("Content-Type", "").startswith("text/html"):
            return response
        return super().process_response(request, response)
