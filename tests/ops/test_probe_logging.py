"""A probe's 503 (``/healthz/background`` while a worker is away) is logged at INFO; a real server
error, on a probe or anywhere, stays an ERROR."""

import logging

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_background_health_answering_503_is_logged_at_info_not_error(client, caplog):
    with caplog.at_level(logging.INFO, logger="django.request"):
        response = client.get("/healthz/background")  # no relay, beat or worker here

    assert response.status_code == 503
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    formatted = _through_the_console_handler(record)
    assert formatted.startswith("INFO") and "/healthz/background" in formatted


def test_runservers_access_line_for_a_probes_503_is_info():
    record = logging.LogRecord(
        "django.server",
        logging.ERROR,
        "",
        0,
        '"%s" %s %s',
        ("GET /healthz/background HTTP/1.1", "503", "193"),
        None,
    )
    record.status_code = 503

    assert _through_the_console_handler(record).startswith("INFO")


@override_settings(DEBUG=False)
def test_a_500_stays_an_error_and_a_503_elsewhere_too():
    for path, status in (("/healthz/background", 500), ("/checkout/", 503)):
        record = logging.LogRecord(
            "django.server",
            logging.ERROR,
            "",
            0,
            '"%s" %s %s',
            (f"GET {path} HTTP/1.1", str(status), "10"),
            None,
        )
        record.status_code = status
        assert _through_the_console_handler(record).startswith("ERROR"), path


def _through_the_console_handler(record: logging.LogRecord) -> str:
    """The record as the settings' console handler writes it (its filters, then its format)."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    assert handler.filter(record)
    return logging.Formatter("%(levelname)s %(name)s %(message)s").format(record)
