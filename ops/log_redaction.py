"""Keep order access tokens out of logs.

An order's id (a UUID in ``/orders/<id>/`` and ``/api/orders/<id>/``) is the only key to the
customer's name and address, so no log line may carry one: not the access log (gunicorn's, with
``config/gunicorn.conf.py``; runserver's ``django.server``), not Django's "Not Found: <path>"
warnings, not ours. A UUID is replaced where it names an order: in an order's path
(``orders/<id>``, with or without dashes) and as a follow-up's subject (``order:<id>``). Other ids
(task ids, request ids, keys) are left alone: logs are grepped for them.
"""

import logging
import re

UUID = re.compile(
    r"(?<=orders/)(?:[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})"
    r"|(?<=order:)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
REDACTED = "<redacted>"


def redact(text: str) -> str:
    return UUID.sub(REDACTED, text)


class RedactOrderTokens(logging.Filter):
    """A logging filter for handlers: formats the record's message once, then redacts it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
