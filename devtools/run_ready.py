"""The Procfile's ``ready`` line: once everything answers, print the addresses again (with Flower's
password), below the start-up logs that pushed the first copy off the screen; then wait.

Everything: the web's ``/readyz`` (database) and ``/healthz/background`` (broker, a relay that
ticks, beat, a worker), Flower, the warehouse simulator, and a worker for each queue class (``critical@…``, ``default@…``). It never exits by
itself (honcho would stop every process if it did) and never fails: a check that errors is a check
that is not yet green.
"""

import http.client
import os
import signal
import sys
import time
import urllib.request

from devtools.run import addresses, urls_block

WORKER_CLASSES = ("critical@", "default@")
SAY_STILL_WAITING_AFTER_SECONDS = 90


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own servers
            return response.status == 200
    except (OSError, http.client.HTTPException):  # refused, timed out, not 200, cut short
        return False


def workers_missing() -> list[str]:
    from celery import current_app

    try:
        names = [name for reply in current_app.control.ping(timeout=1) for name in reply]
    except Exception:
        return list(WORKER_CLASSES)
    return [cls for cls in WORKER_CLASSES if not any(name.startswith(cls) for name in names)]


def not_up_yet() -> list[str]:
    from django.conf import settings

    urls = addresses(os.environ)
    missing = []
    if not answers(f"{urls['web']}/readyz"):
        missing.append("web (/readyz: database)")
    elif not answers(f"{urls['web']}/healthz/background"):
        missing.append("background (/healthz/background: broker, relay, beat, workers)")
    if not answers(f"{urls['flower']}/healthcheck"):
        missing.append("flower")
    if not answers(f"{settings.WAREHOUSE_URL}/config"):
        missing.append("warehouse")
    missing += [f"worker {cls}…" for cls in workers_missing()]
    return missing


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    started = time.monotonic()
    said_waiting = False
    while missing := not_up_yet():
        if not said_waiting and time.monotonic() - started > SAY_STILL_WAITING_AFTER_SECONDS:
            print(f"still waiting for: {', '.join(missing)}", flush=True)
            said_waiting = True
        time.sleep(1)
    took = time.monotonic() - started
    print(urls_block(os.environ, heading=f"Everything is up ({took:.0f} s):"), flush=True)
    signal.pause()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
    except Exception as exc:  # exiting would stop the whole shop: say it, and stay
        print(f"could not tell whether everything is up: {exc!r}", flush=True)
        signal.pause()
