"""The embedded broker: kombu's filesystem transport, safe for concurrent readers and small for weeks.

Each queue is a folder of its own holding one file per message, named by publish time so that name
order is FIFO; a message is written under a temporary name and renamed into place, and claimed by
renaming it into the processed folder, so a reader sees a whole message or nothing and exactly one
reader wins it. Queues declared with an expiry (Celery's event and remote-control queues) are
removed, bindings and messages, once no consumer has polled them for that long, and messages past
their queue's TTL are dropped: a consumer that died leaves nothing that grows. docs/scaling.md
("The embedded broker") says why and what was measured.
"""

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from queue import Empty
from urllib.parse import quote

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.transport.base import to_rabbitmq_queue_arguments
from kombu.transport.virtual.base import queue_declare_ok_t
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

MESSAGE_SUFFIX = ".msg"
WRITING_SUFFIX = ".writing"
QUEUE_FILE = ".queue"  # the queue's name and declared arguments
POLLED_FILE = ".polled"  # its modification time: when a consumer last polled the queue
# A temporary file this old belongs to a writer that died mid-write: removed when a process starts.
STALE_WRITE_SECONDS = 60.0
# Each consuming process looks for queues past their expiry this often.
SWEEP_SECONDS = 5.0
# A consumer touches its queue's POLLED_FILE at most this often (more often for shorter expiries).
POLLED_MARK_SECONDS = 1.0
# Messages of the layout before one folder per queue: "<ms>_<uuid>.<queue>.msg" in the queue folder.
LEGACY_MESSAGE = re.compile(r"\A(\d+)_([0-9a-f-]{36})\.(.+)\.msg\Z")

_clock_lock = threading.Lock()
_last_stamp = 0
_state_lock = threading.Lock()
_prepared_folders: set[str] = set()
# What this process declared, by (queue folder, queue): the queue's expiry and TTL in ms.
_declared: dict[tuple[str, str], dict] = {}


def publish_stamp() -> int:
    """The wall clock in ns, strictly increasing within a process: message names sort FIFO."""
    global _last_stamp
    with _clock_lock:
        _last_stamp = max(time.time_ns(), _last_stamp + 1)
        return _last_stamp


def message_stamp(name: str) -> int:
    return int(name.partition("_")[0])


def queue_folder_name(queue: str) -> str:
    """The folder of a queue: its name, with anything a path could misread percent-encoded."""
    name = quote(queue, safe="@")
    if not name.strip("."):
        name = name.replace(".", "%2E") or "%"
    if len(name.encode()) > 200:
        name = "%" + hashlib.sha256(queue.encode()).hexdigest()
    return name


def write_new_file(path: str, data: bytes) -> None:
    """Write ``data`` under ``path`` (a temporary name); on any failure nothing is left there."""
    try:
        with open(path, "xb") as new_file:
            new_file.write(data)
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(path)
        raise


def replace_file(path: str, data: bytes) -> None:
    """Replace ``path`` whole: readers see the old content or the new, never a part."""
    temporary = os.path.join(
        os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}{WRITING_SUFFIX}"
    )
    write_new_file(temporary, data)
    try:
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def messages_in(names: list[str]) -> list[str]:
    return [name for name in names if name.endswith(MESSAGE_SUFFIX) and name[0] != "."]


class AtomicFilesystemChannel(filesystem.Channel):
    def __init__(self, connection, **kwargs):
        super().__init__(connection, **kwargs)
        self._polled_marked: dict[str, float] = {}
        self._swept_at = time.monotonic()
        self._folder_prepare()

    # --- Queues -----------------------------------------------------------------------------------

    def prepare_queue_arguments(self, arguments, **kwargs):
        # Stock virtual transports drop ``expires`` and ``message_ttl``: keep them, as AMQP does.
        return to_rabbitmq_queue_arguments(arguments, **kwargs)

    def queue_declare(self, queue=None, passive=False, **kwargs):
        queue = queue or f"amq.gen-{uuid.uuid4()}"
        if passive:
            self._mark_polled(queue, force=True)
        else:
            self._declare(queue, kwargs.get("arguments") or {})
        return queue_declare_ok_t(queue, self._size(queue), 0)

    def _declare(self, queue: str, arguments: dict) -> None:
        meta = {
            "name": queue,
            "expires": arguments.get("x-expires"),
            "message_ttl": arguments.get("x-message-ttl"),
        }
        folder = self._queue_path(queue)
        path = os.path.join(folder, QUEUE_FILE)
        key = (self.data_folder_in, queue)
        if _declared.get(key) != meta or not os.path.exists(path):
            os.makedirs(folder, exist_ok=True)
            replace_file(path, str_to_bytes(json.dumps(meta)))
        _declared[key] = meta
        self._mark_polled(queue, force=True)

    def _queue_path(self, queue: str, folder: str | None = None) -> str:
        return os.path.join(folder or self.data_folder_in, queue_folder_name(queue))

    def _mark_polled(self, queue: str, *, force: bool = False) -> None:
        """Say the queue is in use, so that its expiry does not run out under a live consumer."""
        meta = _declared.get((self.data_folder_in, queue))
        if not (meta and meta["expires"]):
            return
        interval = min(POLLED_MARK_SECONDS, meta["expires"] / 4000)
        now = time.monotonic()
        if not force and now - self._polled_marked.get(queue, -interval) < interval:
            return
        path = os.path.join(self._queue_path(queue), POLLED_FILE)
        try:
            os.utime(path)
        except FileNotFoundError:
            try:
                open(path, "ab").close()  # noqa: SIM115 - created empty, only its time matters
            except FileNotFoundError:
                return  # the queue is gone; _get declares it again
        self._polled_marked[queue] = now

    # --- Messages ---------------------------------------------------------------------------------

    def _put(self, queue, payload, **kwargs):
        folder = self._queue_path(queue, self.data_folder_out)
        name = f"{publish_stamp():020d}_{uuid.uuid4().hex}{MESSAGE_SUFFIX}"
        final_path = os.path.join(folder, name)
        temporary_path = os.path.join(folder, f".{name}{WRITING_SUFFIX}")
        data = str_to_bytes(dumps(payload))
        for attempt in (1, 2):
            try:
                write_new_file(temporary_path, data)
                os.rename(temporary_path, final_path)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise ChannelError(f"Cannot add a message to {folder!r}") from None
                # The queue's first message, or its folder was removed (expired, or emptied).
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.remove(temporary_path)
                reason = (
                    "the disk is full"
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                    else exc.strerror or str(exc)
                )
                raise ChannelError(
                    f"The embedded broker could not store a message for queue {queue!r} in "
                    f"{folder}: {reason} ({errno.errorcode.get(exc.errno, exc.errno)}). "
                    "Nothing was queued."
                ) from exc

    def _get(self, queue):
        self._maybe_sweep()
        folder = self._queue_path(queue)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            names = None
        meta = _declared.get((self.data_folder_in, queue))
        if (
            meta
            and meta["expires"]
            and queue in self._active_queues
            and (names is None or QUEUE_FILE not in names)
        ):
            self._redeclare(queue, meta)  # it expired while this consumer could not poll
        if not names:
            raise Empty()
        self._mark_polled(queue)
        ttl_ns = meta["message_ttl"] * 1_000_000 if meta and meta["message_ttl"] else None
        candidates = messages_in(names)
        while candidates:
            name = min(candidates)  # the oldest: names sort by publish time
            candidates.remove(name)
            claimed_path = os.path.join(self.processed_folder, name)
            try:
                os.rename(os.path.join(folder, name), claimed_path)
            except OSError:
                continue  # another reader claimed it first
            try:
                if ttl_ns and message_stamp(name) < time.time_ns() - ttl_ns:
                    continue  # past the queue's TTL: dropped, as AMQP drops it
                with open(claimed_path, "rb") as message_file:
                    payload = message_file.read()
            finally:
                os.remove(claimed_path)
            return loads(bytes_to_str(payload))
        raise Empty()

    def _size(self, queue):
        try:
            return len(messages_in(os.listdir(self._queue_path(queue))))
        except FileNotFoundError:
            return 0

    def _purge(self, queue):
        folder = self._queue_path(queue)
        try:
            names = messages_in(os.listdir(folder))
        except FileNotFoundError:
            return 0
        count = 0
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # taken by a reader meanwhile
                os.remove(os.path.join(folder, name))
                count += 1
        return count

    def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs):
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._table_change(exchange, lambda rows: [row for row in rows if row != binding])
        self._queue_remove(queue)
        _declared.pop((self.data_folder_in, queue), None)

    def _queue_remove(self, queue: str) -> None:
        """Remove a queue's folder: its declaration first (so a consumer declares it again), then
        its messages and the folder itself."""
        folder = self._queue_path(queue)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return
        names.sort(key=lambda name: name != QUEUE_FILE)
        for name in names:
            if not name.endswith(WRITING_SUFFIX):  # a writer's: it finds the folder gone
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(folder, name))
        with contextlib.suppress(OSError):
            os.rmdir(folder)

    def _redeclare(self, queue: str, meta: dict) -> None:
        logger.info("queue %s expired while its consumer was busy: declared and bound again", queue)
        self._declare(queue, {"x-expires": meta["expires"], "x-message-ttl": meta["message_ttl"]})
        for exchange, routing_key, arguments in self.state.queue_bindings(queue):
            binding = self.typeof(exchange).prepare_bind(queue, exchange, routing_key, arguments)
            self._queue_bind(exchange, *binding)

    # --- Exchange tables: replaced whole under a lock, so a reader never sees half a table ----------

    def get_table(self, exchange):
        path = self._exchange_file(exchange)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"Cannot open {path}") from exc
        return [filesystem.exchange_queue_t(*row) for row in loads(bytes_to_str(data or b"[]"))]

    def queue_bind(self, queue, exchange=None, routing_key="", arguments=None, **kwargs):
        exchange = exchange or "amq.direct"
        if self.state.has_binding(queue, exchange, routing_key):
            # This process bound it before, but the queue may have expired since: bind it on disk.
            binding = self.typeof(exchange).prepare_bind(queue, exchange, routing_key, arguments)
            self._queue_bind(exchange, *binding)
            return
        super().queue_bind(queue, exchange, routing_key, arguments, **kwargs)

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._table_change(exchange, lambda rows: rows if binding in rows else [binding, *rows])

    def _table_change(self, exchange: str, change) -> None:
        path = self._exchange_file(exchange)
        try:
            self.control_folder.mkdir(exist_ok=True)
            with open(f"{path}.lock", "ab") as lock_file:
                filesystem.lock(lock_file, filesystem.LOCK_EX)
                try:
                    rows = self.get_table(exchange)
                    changed = change(rows)
                    if changed != rows:
                        replace_file(str(path), str_to_bytes(dumps(changed)))
                finally:
                    filesystem.unlock(lock_file)
        except OSError as exc:
            raise ChannelError(f"Cannot update {path}") from exc

    # --- Expiry -----------------------------------------------------------------------------------

    def _maybe_sweep(self) -> None:
        now = time.monotonic()
        if now - self._swept_at >= SWEEP_SECONDS:
            self._swept_at = now
            try:
                self.queues_expire(now=time.time())
            except Exception:  # housekeeping: a failed sweep must not stop this consumer
                logger.exception("could not remove expired queues from %s", self.data_folder_in)

    def queues_expire(self, *, now: float) -> list[str]:
        """Remove queues unused for longer than their expiry (``now`` is a wall-clock time), and
        drop the messages past their TTL from queues nobody polls; the names of those removed."""
        removed = []
        try:
            entries = list(os.scandir(self.data_folder_in))
        except FileNotFoundError:
            return removed
        for entry in entries:
            if not entry.is_dir():
                continue
            try:
                with open(os.path.join(entry.path, QUEUE_FILE), "rb") as meta_file:
                    meta = json.loads(meta_file.read())
                    declared_at = os.fstat(meta_file.fileno()).st_mtime
            except (FileNotFoundError, NotADirectoryError, ValueError):
                continue  # never declared here: kept, as a queue without an expiry is
            try:
                used_at = os.stat(os.path.join(entry.path, POLLED_FILE)).st_mtime
            except FileNotFoundError:
                used_at = declared_at
            idle = now - max(used_at, declared_at)
            if meta.get("expires") and idle > meta["expires"] / 1000:
                self._queue_expire(meta["name"])
                removed.append(meta["name"])
            elif meta.get("message_ttl") and idle > meta["message_ttl"] / 1000:
                self._messages_drop_older(
                    entry.path, now_ns=int(now * 1e9), ttl=meta["message_ttl"]
                )
        return removed

    def _queue_expire(self, queue: str) -> None:
        for path in self.control_folder.glob("*.exchange"):
            self._table_change(
                path.name.removesuffix(".exchange"),
                lambda rows: [row for row in rows if row.queue != queue],
            )
        self._queue_remove(queue)
        logger.info("queue %s expired: no consumer polled it for its x-expires", queue)

    @staticmethod
    def _messages_drop_older(folder: str, *, now_ns: int, ttl: int) -> None:
        oldest_kept = now_ns - ttl * 1_000_000
        with contextlib.suppress(FileNotFoundError):
            for name in messages_in(os.listdir(folder)):
                if message_stamp(name) < oldest_kept:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(folder, name))

    # --- Start --------------------------------------------------------------------------------------

    def _folder_prepare(self) -> None:
        """Once per process and folder: move messages of the former layout into their queue's
        folder (oldest first, before anything new), give the former layout's event and
        remote-control queues their expiry, and remove what writers that died left half-written."""
        folder = self.data_folder_in
        with _state_lock:
            if folder in _prepared_folders:
                return
            _prepared_folders.add(folder)
        os.makedirs(folder, exist_ok=True)
        stale_before = time.time() - STALE_WRITE_SECONDS
        for entry in os.scandir(folder):
            if entry.is_dir():
                with contextlib.suppress(FileNotFoundError), os.scandir(entry.path) as names:
                    for inner in names:
                        if inner.name.endswith(WRITING_SUFFIX):
                            self._remove_if_older(inner.path, stale_before)
                continue
            legacy = LEGACY_MESSAGE.match(entry.name)
            if legacy:
                stamp, identifier, queue = legacy.groups()
                target = self._queue_path(queue)
                os.makedirs(target, exist_ok=True)
                new_name = f"{int(stamp):020d}_{identifier.replace('-', '')}{MESSAGE_SUFFIX}"
                with contextlib.suppress(FileNotFoundError):  # another process moved it
                    os.rename(entry.path, os.path.join(target, new_name))
            elif entry.name.endswith(WRITING_SUFFIX):
                self._remove_if_older(entry.path, stale_before)
        self._legacy_queues_expire_from_now()

    def _legacy_queues_expire_from_now(self) -> None:
        expiries = self.transport_options.get("legacy_queue_expires") or {}
        for exchange, seconds in expiries.items():
            for row in self.get_table(exchange):
                folder = self._queue_path(row.queue)
                if os.path.exists(os.path.join(folder, QUEUE_FILE)):
                    continue
                os.makedirs(folder, exist_ok=True)
                meta = {"name": row.queue, "expires": int(seconds * 1000), "message_ttl": None}
                replace_file(os.path.join(folder, QUEUE_FILE), str_to_bytes(json.dumps(meta)))

    @staticmethod
    def _remove_if_older(path: str, before: float) -> None:
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_mtime < before:
                os.remove(path)


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = AtomicFilesystemChannel
    global_state = filesystem.Transport.global_state
    # A folder has no host: without this, kombu warns "No hostname was supplied. Reverting to
    # default 'localhost'" on every connection it describes (21 lines at each `make run`).
    default_connection_params: dict = {}


def transport_options(folder: str, *, legacy_queue_expires: dict[str, float]) -> dict:
    """Broker options for one shared folder; creates the folders the transport expects.

    ``legacy_queue_expires``: for queues bound to these exchanges before their folders had a
    declaration (an upgrade from the former layout), the expiry to give them, in seconds.
    """
    paths = {name: os.path.join(folder, name) for name in ("queue", "processed", "control")}
    for path in paths.values():
        os.makedirs(path, exist_ok=True)
    return {
        "data_folder_in": paths["queue"],
        "data_folder_out": paths["queue"],
        "processed_folder": paths["processed"],
        "store_processed": False,
        "control_folder": paths["control"],
        "polling_interval": 0.1,
        "legacy_queue_expires": legacy_queue_expires,
    }
