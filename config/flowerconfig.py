"""Flower's configuration file, executed by Flower at start (``--conf=config/flowerconfig.py``), in
development (Procfile) and in the production shape (Procfile.production, docker-compose.yml) alike.

Flower refuses to start without real credentials: a user, and a password of 12 characters or more
that is not the example's placeholder (``CELERY_FLOWER_USER``/``CELERY_FLOWER_PASSWORD``, which
the Procfiles and compose pass as ``--basic-auth``).

The tasks page shows each task's arguments: every follow-up runs as ``follow_ups.run``, and only
its arguments (``follow_ups.services.follow_up_send`` sets them for people: "[42] invoice
CS-9N39CVDJ", the row id, the kind and the order number) say which order and which follow-up it is.
Flower 2.2 leaves that column out by default.

Flower 2.2 checks basic auth only in handlers that ask who the user is; its Prometheus ``/metrics``
handler does not, so anyone who can reach the port could read it. Here it asks for the same
credentials as every other Flower page (``get_current_user`` answers 401 for wrong ones).
"""

import os
import sys
from logging import ERROR, getLogger  # not `logging`: Flower reads this file's names as options

import tornado.web
from flower.views.monitor import Metrics


def _credentials() -> list[tuple[str, str]]:
    """The basic-auth pairs Flower was given: ``--basic-auth=user:password[,...]`` on its command
    line, or ``FLOWER_BASIC_AUTH``."""
    given = os.environ.get("FLOWER_BASIC_AUTH", "")
    for argument in sys.argv:
        if argument.startswith("--basic-auth="):
            given = argument.removeprefix("--basic-auth=")
    return [tuple(pair.partition(":")[::2]) for pair in given.split(",") if pair]


_pairs = _credentials()
if not _pairs or any(
    not user or len(password) < 12 or password.startswith("change-me") for user, password in _pairs
):
    sys.exit(
        "Flower needs a user and a password of 12 characters or more (not the example's "
        "change-me): set CELERY_FLOWER_USER and CELERY_FLOWER_PASSWORD in the environment."
    )


def _metrics_require_login(handler) -> None:
    if not handler.current_user:
        raise tornado.web.HTTPError(401)


Metrics.prepare = _metrics_require_login

# Module-level names are Flower's options.
tasks_columns = "name,args,state,received,runtime,worker,uuid"

# Flower asks the workers about themselves once at start and warns "Inspect method … failed" for
# each question no worker answered: at `make run` and on a deploy Flower is up before the workers.
# It learns them from their events (and the next inspection) anyway; a worker that never comes is
# what the ops page, /healthz/background and the ShopNoWorkerOnQueue alert report.
getLogger("flower.inspector").setLevel(ERROR)
