"""A probe's 503 is an answer, not a server error: logged at INFO, not as Django's ERROR."""

import logging

PROBE_PATHS = ("/readyz", "/healthz", "/healthz/background")


class ProbeAnswersAreInfo(logging.Filter):
    """Lowers Django's "Service Unavailable: /healthz/background" (``django.request``) and
    runserver's access line for it (``django.server``) to INFO. Starting up, and while the broker
    or a worker is away, ``/healthz/background`` answers 503 by design (``make run``'s ``ready``
    line asks it until it is 200); a real error on a probe (a 500) stays an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and getattr(record, "status_code", None) == 503:
            request = getattr(record, "request", None)
            path = getattr(request, "path", None) or _path_of_access_line(record)
            if path in PROBE_PATHS:
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _path_of_access_line(record: logging.LogRecord) -> str | None:
    # runserver's access line: args are ("GET /healthz/background HTTP/1.1", "503", "193").
    if record.args and isinstance(record.args, tuple) and isinstance(record.args[0], str):
        parts = record.args[0].split()
        if len(parts) >= 2:
            return parts[1].split("?")[0]
    return None
