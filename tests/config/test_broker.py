"""The embedded broker (config/broker.py): FIFO, one winner per message, queues that expire, a poll
that reads only its own queue, an upgrade that loses nothing, and a full disk that leaves nothing.

Each test gets a broker folder of its own; the transport is the one settings use.
"""

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.exceptions import ChannelError

from config import broker
from config.celery import app

EVENTS = Exchange("celeryev", type="topic")


def connect(folder: Path) -> Connection:
    options = broker.transport_options(
        str(folder), legacy_queue_expires={"celeryev": settings.CELERY_EVENT_QUEUE_EXPIRES}
    )
    return Connection(
        transport="config.broker:AtomicFilesystemTransport", transport_options=options
    )


def event_queue(name: str = "celeryev.test", **options) -> Queue:
    return Queue(name, exchange=EVENTS, routing_key="#", auto_delete=True, **options)


def drain(connection: Connection, queue: Queue, count: int) -> list:
    bodies: list = []
    callbacks = [lambda body, message: bodies.append(body)]
    with Consumer(connection, [queue], callbacks=callbacks), contextlib.suppress(TimeoutError):
        while len(bodies) < count:
            connection.drain_events(timeout=1)
    return bodies


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def table(folder: Path, exchange: str) -> list[str]:
    path = folder / "control" / f"{exchange}.exchange"
    return [queue for _, _, queue in json.loads(path.read_text())] if path.exists() else []


@pytest.fixture
def connection(tmp_path):
    with connect(tmp_path) as connection:
        yield connection


def test_settings_use_this_transport_for_the_embedded_default(tmp_path):
    # Read in a process of its own with no broker set, so every pass of the suite (on a broker
    # server too) checks the embedded default's settings.
    environment = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, django; django.setup(); from django.conf import settings; "
            "print(json.dumps([settings.CELERY_BROKER_TRANSPORT, "
            "settings.CELERY_BROKER_TRANSPORT_OPTIONS['legacy_queue_expires']]))",
        ],
        env=environment | {"DJANGO_SETTINGS_MODULE": "config.settings", "VAR_DIR": str(tmp_path)},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    transport, legacy_queue_expires = json.loads(read.stdout.strip().splitlines()[-1])
    assert transport == "config.broker:AtomicFilesystemTransport"
    assert legacy_queue_expires == {
        "celeryev": 60.0,
        "celery.pidbox": 10.0,
        "reply.celery.pidbox": 10.0,
    }


def test_messages_of_one_queue_come_out_in_the_order_they_went_in(connection, tmp_path):
    queue = Queue("default", routing_key="default")
    producer = Producer(connection.channel())
    for number in range(200):
        producer.publish({"n": number}, routing_key="default", declare=[queue])
    assert sorted(os.listdir(tmp_path / "queue")) == ["default"]
    assert [body["n"] for body in drain(connection, queue, 200)] == list(range(200))


def test_each_message_is_taken_by_exactly_one_of_many_readers(tmp_path):
    queue = Queue("default", routing_key="default")
    with connect(tmp_path) as publisher:
        producer = Producer(publisher.channel())
        for number in range(300):
            producer.publish({"n": number}, routing_key="default", declare=[queue])
    taken: list[list[int]] = [[] for _ in range(4)]

    def read(into: list[int]) -> None:
        with connect(tmp_path) as reader:
            channel = reader.channel()
            while (message := channel.basic_get("default", no_ack=True)) is not None:
                into.append(message.decode()["n"])

    threads = [threading.Thread(target=read, args=(into,)) for into in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(n for into in taken for n in into) == list(range(300))


def test_a_poll_lists_only_its_own_queues_folder(connection, tmp_path):
    producer = Producer(connection.channel())
    for name in ("busy", "idle"):
        producer.publish({}, routing_key=name, declare=[Queue(name, routing_key=name)])
    for number in range(500):
        producer.publish({"n": number}, routing_key="busy")
    listed: list[str] = []
    watching = True

    def watch(event, args):
        if watching and event in ("os.listdir", "os.scandir"):
            listed.append(os.fspath(args[0]))

    channel = connection.channel()
    channel._swept_at = time.monotonic()  # this poll alone, not the periodic sweep
    sys.addaudithook(watch)
    try:
        channel.basic_get("idle", no_ack=True)
    finally:
        watching = False
    assert listed == [str(tmp_path / "queue" / "idle")]


def test_a_departed_consumers_event_queue_expires_after_celerys_event_queue_expires(
    connection, tmp_path
):
    # The queue Flower declares, with the production setting (60 s): built by Celery itself.
    receiver = app.events.Receiver(connection, handlers={})
    assert receiver.queue.expires == settings.CELERY_EVENT_QUEUE_EXPIRES == 60.0
    assert receiver.queue.message_ttl == settings.CELERY_EVENT_QUEUE_TTL == 5.0
    channel = connection.channel()
    receiver.queue(channel).declare()
    folder = tmp_path / "queue" / receiver.queue.name
    assert json.loads((folder / ".queue").read_text()) == {
        "name": receiver.queue.name,
        "expires": 60_000,
        "message_ttl": 5_000,
    }
    assert table(tmp_path, "celeryev") == [receiver.queue.name]
    Producer(channel).publish({"type": "worker-heartbeat"}, exchange=EVENTS, routing_key="worker")

    # Nobody polls it from now on (the consumer is gone).
    assert channel.queues_expire(now=time.time() + 59) == []
    assert folder.exists()
    assert channel.queues_expire(now=time.time() + 61) == [receiver.queue.name]
    assert not folder.exists()
    assert table(tmp_path, "celeryev") == []
    # What the workers publish next goes nowhere.
    Producer(channel).publish({"type": "worker-heartbeat"}, exchange=EVENTS, routing_key="worker")
    assert files_under(tmp_path / "queue") == []


def test_a_polled_queue_does_not_expire(connection, tmp_path):
    queue = event_queue(expires=0.4)
    channel = connection.channel()
    queue(channel).declare()
    for _ in range(8):
        channel.basic_get(queue.name, no_ack=True)  # a consumer's poll
        assert channel.queues_expire(now=time.time()) == []
        time.sleep(0.1)
    assert (tmp_path / "queue" / queue.name / ".queue").exists()
    time.sleep(0.5)
    assert channel.queues_expire(now=time.time()) == [queue.name]


def test_a_consumer_whose_queue_expired_while_it_was_busy_declares_and_binds_it_again(
    connection, tmp_path
):
    queue = event_queue(expires=60)
    channel = connection.channel()
    with Consumer(channel, [queue], callbacks=[lambda body, message: None]):
        channel.queues_expire(now=time.time() + 61)
        assert table(tmp_path, "celeryev") == []
        with contextlib.suppress(TimeoutError):
            connection.drain_events(timeout=0.3)  # its next poll
        assert table(tmp_path, "celeryev") == [queue.name]
        Producer(channel).publish({"type": "worker-online"}, exchange=EVENTS, routing_key="w")
        assert channel._size(queue.name) == 1


def test_events_past_their_ttl_are_dropped_not_delivered(connection):
    # Production's TTL is 5 s (asserted above); the same comparison with a shorter one.
    queue = event_queue(message_ttl=1)
    channel = connection.channel()
    queue(channel).declare()
    producer = Producer(channel)
    producer.publish({"n": "stale"}, exchange=EVENTS, routing_key="w")
    time.sleep(1.2)
    producer.publish({"n": "fresh"}, exchange=EVENTS, routing_key="w")
    assert channel.basic_get(queue.name, no_ack=True).decode() == {"n": "fresh"}
    assert channel._size(queue.name) == 0


def test_an_unpolled_queue_without_expiry_keeps_only_messages_within_its_ttl(connection, tmp_path):
    queue = event_queue(message_ttl=5)
    channel = connection.channel()
    queue(channel).declare()
    Producer(channel).publish({}, exchange=EVENTS, routing_key="w")
    assert channel.queues_expire(now=time.time() + 4) == []
    assert channel._size(queue.name) == 1
    channel.queues_expire(now=time.time() + 6)
    assert channel._size(queue.name) == 0
    assert (tmp_path / "queue" / queue.name / ".queue").exists()  # the queue itself stays


def test_task_queues_never_expire_however_long_no_worker_polls(connection, tmp_path):
    queue = Queue("bulk", routing_key="bulk")
    channel = connection.channel()
    Producer(channel).publish({"n": 1}, routing_key="bulk", declare=[queue])
    assert channel.queues_expire(now=time.time() + 365 * 24 * 3600) == []
    assert channel.basic_get("bulk", no_ack=True).decode() == {"n": 1}


def test_messages_of_the_former_layout_are_delivered_first_after_an_upgrade(tmp_path):
    # The former layout: every queue's messages side by side, "<ms>_<uuid>.<queue>.msg".
    queue_folder = tmp_path / "queue"
    queue_folder.mkdir()
    former = []
    for number in range(3):
        payload = {"body": json.dumps({"n": number}), "content-type": "application/json"}
        payload |= {"content-encoding": "utf-8", "headers": {}, "properties": {}}
        payload["properties"] = {
            "delivery_tag": str(uuid.uuid4()),
            "body_encoding": "utf-8",
            "delivery_info": {"exchange": "default", "routing_key": "default"},
        }
        name = f"{123456 + number}_{uuid.uuid4()}.default.msg"
        (queue_folder / name).write_text(json.dumps(payload))
        former.append(name)
    (queue_folder / f"123460_{uuid.uuid4()}.bulk.msg").write_text("{}")

    with connect(tmp_path) as connection:
        queue = Queue("default", routing_key="default")
        Producer(connection.channel()).publish({"n": 3}, routing_key="default", declare=[queue])
        assert sorted(p.name for p in queue_folder.iterdir() if p.is_dir()) == ["bulk", "default"]
        assert not any(p.is_file() for p in queue_folder.iterdir())
        assert [body["n"] for body in drain(connection, queue, 4)] == [0, 1, 2, 3]


def test_event_queues_bound_before_the_upgrade_are_given_their_expiry(tmp_path):
    (tmp_path / "control").mkdir()
    dead = "celeryev.dead-flower"
    (tmp_path / "control" / "celeryev.exchange").write_text(json.dumps([["#", "", dead]]))
    with connect(tmp_path) as connection:
        channel = connection.channel()
        assert channel.queues_expire(now=time.time() + 59) == []
        assert channel.queues_expire(now=time.time() + 61) == [dead]
        assert table(tmp_path, "celeryev") == []


def test_a_message_that_finds_the_disk_full_leaves_nothing_and_says_so(tmp_path):
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        with connect(mount_point) as connection:
            queue = Queue("default", routing_key="default")
            producer = Producer(connection.channel())
            producer.publish({"n": 0}, routing_key="default", declare=[queue])
            body = "x" * 3000
            stored = 1
            with pytest.raises(ChannelError) as raised:
                for _ in range(100):
                    producer.publish({"n": stored, "pad": body}, routing_key="default")
                    stored += 1
            assert "the disk is full (ENOSPC)" in str(raised.value)
            assert "Nothing was queued" in str(raised.value)
            assert [name for name in files_under(mount_point) if name.endswith(".writing")] == []
            # What was stored before the disk filled is intact and in order.
            numbers = [body["n"] for body in drain(connection, queue, stored)]
            assert numbers == list(range(stored))
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_writer_that_died_mid_write_leaves_a_file_removed_at_start_and_never_delivered(tmp_path):
    queue_folder = tmp_path / "queue" / "default"
    queue_folder.mkdir(parents=True)
    abandoned = queue_folder / f".{time.time_ns():020d}_{uuid.uuid4().hex}.msg.writing"
    in_progress = queue_folder / f".{time.time_ns():020d}_{uuid.uuid4().hex}.msg.writing"
    for path in (abandoned, in_progress):
        path.write_text('{"half": ')
    long_ago = time.time() - broker.STALE_WRITE_SECONDS - 1
    os.utime(abandoned, (long_ago, long_ago))

    with connect(tmp_path) as connection:
        channel = connection.channel()  # a process starting on the folder
        assert not abandoned.exists()
        assert in_progress.exists()  # maybe a live writer's: left alone
        assert channel.basic_get("default", no_ack=True) is None
        assert channel._size("default") == 0


def test_bindings_made_at_once_are_all_kept_and_readers_never_see_half_a_table(tmp_path):
    failures: list[Exception] = []
    binding = threading.Event()

    def bind(prefix: str) -> None:
        with connect(tmp_path) as connection:
            channel = connection.channel()
            for number in range(100):
                channel._queue_bind("celeryev", "#", "", f"{prefix}.{number}")

    def read() -> None:
        with connect(tmp_path) as connection:
            channel = connection.channel()
            while binding.is_set():
                try:
                    channel.get_table("celeryev")
                except Exception as exc:  # a half-written table fails to decode
                    failures.append(exc)

    binding.set()
    reader = threading.Thread(target=read)
    reader.start()
    binders = [threading.Thread(target=bind, args=(prefix,)) for prefix in "abc"]
    for thread in binders:
        thread.start()
    for thread in binders:
        thread.join()
    binding.clear()
    reader.join()
    assert failures == []
    assert len(set(table(tmp_path, "celeryev"))) == 300


def test_queue_names_cannot_leave_the_queue_folder():
    assert broker.queue_folder_name("../etc") == "..%2Fetc"
    assert broker.queue_folder_name("..") == "%2E%2E"
    assert broker.queue_folder_name("default@host.celery.pidbox") == "default@host.celery.pidbox"
    assert len(broker.queue_folder_name("q" * 300)) < 100
