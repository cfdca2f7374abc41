"""Flower's configuration file, executed by Flower at start (``--conf=config/flowerconfig.py``).

Flower 2.2 checks basic auth only in handlers that ask who the user is; its Prometheus ``/metrics``
handler does not, so anyone who can reach the port could read it. Here it asks for the same
credentials as every other Flower page (``get_current_user`` answers 401 for wrong ones).
"""

import tornado.web
from flower.views.monitor import Metrics


def _metrics_require_login(handler) -> None:
    if not handler.current_user:
        raise tornado.web.HTTPError(401)


Metrics.prepare = _metrics_require_login
