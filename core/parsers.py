"""Reading JSON: the request bodies (DRF's parser) and the socket messages (`core.ws`) the same way."""

import json

import orjson
from rest_framework import parsers
from rest_framework.exceptions import ParseError

TOO_DEEP = "JSON nested too deeply."


def loads(text: str | bytes):
    """A JSON message's values; ValueError for anything that is not JSON. orjson reads the common case; the
    standard module decides what orjson refuses and it accepts (NaN, integers past 64 bits). Nesting deeper than
    the interpreter's stack takes is refused as bad input, not raised as a RecursionError."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            return json.loads(text)
        except RecursionError:
            raise ValueError(TOO_DEEP) from None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with nesting too deep to read a 400 like any other malformed body (it was a 500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - {TOO_DEEP}") from None
