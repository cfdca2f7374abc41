"""gunicorn's settings for the production shape (``gunicorn -c config/gunicorn.conf.py``).

The access log names the request's path and Referer; an order's path carries its access token, so
every access-log field is redacted (``ops.log_redaction``) before it is written.

Each worker process records its request durations in ``PROMETHEUS_MULTIPROC_DIR`` (a fresh folder
per start unless set), and ``/metrics`` sums them (``ops.http_metrics``). It is set here, before
anything imports prometheus_client, so the workers forked from this process inherit it.
"""

import os
import tempfile

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="shop-prometheus-"))

from gunicorn.glogging import Logger  # noqa: E402 - after the variable prometheus_client reads
from prometheus_client import multiprocess  # noqa: E402

from ops.log_redaction import redact  # noqa: E402

accesslog = "-"


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            key: redact(value) if isinstance(value, str) else value for key, value in atoms.items()
        }


logger_class = RedactingLogger


def child_exit(server, worker):
    # A worker that exited keeps its counts in the sums; its live gauges (none yet) would go.
    multiprocess.mark_process_dead(worker.pid)
