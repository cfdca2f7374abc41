"""Flower's configuration file, executed by Flower at start (``--conf=config/flowerconfig.py``).

The tasks page shows each task's arguments: every follow-up runs as ``follow_ups.run``, and only
its arguments (``follow_ups.services.follow_up_send`` sets them for people: "[42] invoice
CS-9N39CVDJ", the row id, the kind and the order number) say which order and which follow-up it is.
Flower 2.2 leaves that column out by default.

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

# Module-level names are Flower's options.
tasks_columns = "name,args,state,received,runtime,worker,uuid"
