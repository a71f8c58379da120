"""Log filters: what a log line must not carry."""

import logging
import re

# A tracking link's token is its only credential (API.md): whoever reads it follows the customer's delivery. Django
# writes the path of every 4xx answer to the log (`django.request`: "Too Many Requests: /t/<token>").
TRACKING_PATH = re.compile(r"(/t/|/api/v1/track/|/ws/track/)[^/?\s]+")


class RedactTrackingTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _redacted(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def _redacted(text: str) -> str:
    return TRACKING_PATH.sub(r"\1…", text)
