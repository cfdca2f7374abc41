"""The dead-letter digest: the job lists each dead letter in one digest and writes the digest's
emails as follow-ups (one per staff recipient) in the same transaction; a digest whose email fails
keeps its entries and is retried or becomes a dead letter itself, never listed in a digest."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from follow_ups import tasks
from follow_ups.dead_letter_digest import DIGEST_EMAIL
from follow_ups.models import DeadLetterNotice, FollowUp
from follow_ups.services import follow_up_replay
from tests.factories import ProductFactory, place_order
from tests.ledger import follow_ups_run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def staff(settings):
    settings.STAFF_EMAILS = ["ops@example.com"]


def kill(follow_up: FollowUp, error: str) -> None:
    FollowUp.objects.filter(pk=follow_up.pk).update(status="dead", last_error=error)


def digests() -> list[FollowUp]:
    return list(FollowUp.objects.filter(kind=DIGEST_EMAIL).order_by("pk"))


def test_the_digest_lists_each_new_dead_letter_once(mailoutbox):
    first = place_order((ProductFactory(), 1)).order
    second = place_order((ProductFactory(), 1)).order
    kill(FollowUp.objects.get(key=f"order:{first.pk}:warehouse_sync"), "HTTP 422: undeliverable")

    tasks.dead_letter_digest_task(period="2030-05-04T12:00")
    tasks.dead_letter_digest_task(period="2030-05-04T12:00")  # the same hour again: nothing new
    tasks.dead_letter_digest_task(period="2030-05-04T13:00")  # nothing died since: no digest
    kill(FollowUp.objects.get(key=f"order:{second.pk}:invoice"), "ValueError: bad font")
    tasks.dead_letter_digest_task(period="2030-05-04T14:00")
    follow_ups_run(kind=DIGEST_EMAIL)

    first_digest, second_digest = mailoutbox
    assert first.number in first_digest.body and "HTTP 422" in first_digest.body
    assert second.number not in first_digest.body
    assert second.number in second_digest.body and first.number not in second_digest.body
    assert DeadLetterNotice.objects.count() == 2
    assert [f.status for f in digests()] == ["succeeded", "succeeded"]


def test_the_digest_is_one_email_row_per_recipient_written_with_its_notices(django_user_model):
    django_user_model.objects.create_user("ann", "ann@example.com", "x", is_staff=True)
    order = place_order((ProductFactory(), 1)).order
    dead = FollowUp.objects.get(key=f"order:{order.pk}:invoice")
    kill(dead, "ValueError: bad font")

    result = tasks.dead_letter_digest_task(period="2030-05-04T12:00")

    assert (result["dead_letters"], result["digests"], result["follow_ups"]) == (1, 1, 2)
    assert DeadLetterNotice.objects.get().follow_up_id == dead.pk
    assert [(f.key, f.payload["follow_up_ids"]) for f in digests()] == [
        (f"dead_letter_digest:2030-05-04T12:00:{dead.pk}:to:ann@example.com", [dead.pk]),
        (f"dead_letter_digest:2030-05-04T12:00:{dead.pk}:to:ops@example.com", [dead.pk]),
    ]


def test_a_digest_whose_email_fails_keeps_its_entries_and_sends_them_on_retry(smtp):
    order = place_order((ProductFactory(), 1)).order
    kill(FollowUp.objects.get(key=f"order:{order.pk}:invoice"), "ValueError: bad font")
    smtp.refuse_next("451 4.3.0 Try again later")  # the mail server is busy

    tasks.dead_letter_digest_task(period="2030-05-04T12:00")
    (digest,) = follow_ups_run(kind=DIGEST_EMAIL)
    assert digest.status == "retrying" and smtp.messages == []
    tasks.dead_letter_digest_task(period="2030-05-04T13:00")  # already listed: no second digest
    assert len(digests()) == 1

    with time_machine.travel(timezone.now() + timedelta(minutes=10)):  # the retry is due
        (digest,) = follow_ups_run(kind=DIGEST_EMAIL)

    assert digest.status == "succeeded"
    (email,) = smtp.messages
    assert order.number in email["body"] and "bad font" in email["body"]


def test_a_dead_digest_is_never_listed_in_a_digest_and_a_replay_sends_it(smtp):
    order = place_order((ProductFactory(), 1)).order
    kill(FollowUp.objects.get(key=f"order:{order.pk}:invoice"), "ValueError: bad font")
    smtp.refuse_recipient("ops@example.com")  # 550 for good

    tasks.dead_letter_digest_task(period="2030-05-04T12:00")
    (digest,) = follow_ups_run(kind=DIGEST_EMAIL)
    assert digest.status == "dead"
    result = tasks.dead_letter_digest_task(period="2030-05-04T13:00")
    assert result["dead_letters"] == 0 and len(digests()) == 1

    smtp.clear()  # the address works again
    follow_up_replay(follow_up_ids=[digest.pk])
    (digest,) = follow_ups_run(kind=DIGEST_EMAIL)

    assert digest.status == "succeeded"
    (email,) = smtp.messages
    assert order.number in email["body"]


def test_dead_letters_past_the_chunk_size_are_listed_in_one_digest_per_chunk(settings):
    settings.JOB_CHUNK_SIZE = 4
    for _ in range(3):
        order = place_order((ProductFactory(), 1)).order
        FollowUp.objects.filter(subject=f"order:{order.pk}").update(status="dead")  # 3 each

    result = tasks.dead_letter_digest_task(period="2030-05-04T12:00")

    assert (result["dead_letters"], result["digests"]) == (9, 3)
    listed = [pk for digest in digests() for pk in digest.payload["follow_up_ids"]]
    assert sorted(listed) == sorted(
        FollowUp.objects.filter(status="dead").values_list("pk", flat=True)
    )
    assert DeadLetterNotice.objects.count() == 9


def test_with_no_staff_recipient_nothing_is_listed_until_there_is_one(settings):
    settings.STAFF_EMAILS = []
    order = place_order((ProductFactory(), 1)).order
    kill(FollowUp.objects.get(key=f"order:{order.pk}:invoice"), "ValueError: bad font")

    tasks.dead_letter_digest_task(period="2030-05-04T12:00")
    assert not DeadLetterNotice.objects.exists()

    settings.STAFF_EMAILS = ["ops@example.com"]
    tasks.dead_letter_digest_task(period="2030-05-04T13:00")
    assert DeadLetterNotice.objects.count() == 1 and len(digests()) == 1
