"""The API's pages (API.md: lists are paginated): DRF's page numbers, 50 to a page, with a page that is no page
number being bad input."""

from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination


class PageNumbers(PageNumberPagination):
    """`?page=2`, or `?page=last`. A page number that is no whole number from 1 (`?page=abc`, `?page=0`) is bad
    input, a 400 naming `page`, where DRF answers 404 "Invalid page." as for a page past the end; that one stays a
    404 (the page is missing), with a detail that says so."""

    invalid_page_message = "There is no page {page_number}: {message}."

    def get_page_number(self, request, paginator):
        value = request.query_params.get(self.page_query_param) or "1"
        if value in self.last_page_strings:
            return paginator.num_pages
        if not (value.isascii() and value.isdigit()) or int(value) < 1:
            raise serializers.ValidationError({self.page_query_param: ["Must be a whole number from 1, or last."]})
        return value

    def get_paginated_response_schema(self, schema: dict) -> dict:
        """DRF's page in the schema's OpenAPI 3.1 (JSON Schema 2020-12): `next` and `previous` are null on the last
        and first pages, said as a type that may be null. DRF writes OpenAPI 3.0's `nullable`, which 3.1 dropped
        (drf-spectacular#1360), so clients generated from the schema refused every last page."""
        page = super().get_paginated_response_schema(schema)
        for link in ("next", "previous"):
            described = page["properties"][link]
            del described["nullable"]
            described["type"] = [described["type"], "null"]
        return page
