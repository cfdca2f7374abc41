"""What docs/alternatives.md says of an alternative, measured here rather than taken on trust."""

import pytest
from celery import Celery
from django.db import transaction
from kombu.exceptions import OperationalError

from shop.models import Product
from tests.factories import ProductFactory
from tests.processes import free_port


@pytest.mark.django_db(transaction=True)
def test_celerys_delay_on_commit_fails_after_the_commit_and_the_task_is_owed_nowhere(monkeypatch):
    """Celery 5.7's ``delay_on_commit`` is ``on_commit(partial(delay, ...))``: with the broker
    down, the commit stands and the publish's error escapes to the caller (a web request answers
    500 for an order that exists), and nothing is left to publish the task later."""
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)  # Celery prefers it to the app's own
    app = Celery(
        "delay-on-commit",
        broker=f"amqp://guest:guest@127.0.0.1:{free_port()}//",  # nothing listens there
        task_cls="celery.contrib.django.task:DjangoTask",
        set_as_current=False,
    )
    app.conf.update(broker_connection_timeout=1, task_publish_retry=False)

    @app.task(name="alternatives.send_confirmation")
    def send_confirmation(product_id):
        raise AssertionError("never runs: nothing was published")

    with pytest.raises(OperationalError), transaction.atomic():
        product = ProductFactory()
        send_confirmation.delay_on_commit(product.pk)

    assert Product.objects.filter(pk=product.pk).exists()  # committed all the same
