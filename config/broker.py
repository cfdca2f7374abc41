"""The embedded broker: kombu's filesystem transport, made safe for concurrent readers.

Stock ``filesystem`` writes each message in place, so a worker polling the folder can pick up a
half-written file, fail to decode it and lose the message; and it claims a message by moving it to the
system temporary folder, which is a copy (not an atomic claim) when that folder is on another disk.
Here a message is written under a temporary name and renamed into place, and claimed by renaming it
into the processed folder next to it: ``os.rename`` is atomic on one filesystem, so a reader sees a
whole message or nothing, and exactly one reader wins each message.
"""

import os
import uuid
from queue import Empty
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


class AtomicFilesystemChannel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        # The name sorts by publish time (as upstream does); the temporary suffix keeps readers off.
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final_path = os.path.join(self.data_folder_out, name)
        temporary_path = f"{final_path}.writing"
        try:
            with open(temporary_path, "wb") as message_file:
                message_file.write(str_to_bytes(dumps(payload)))
            os.rename(temporary_path, final_path)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final_path!r} to directory") from exc

    def _get(self, queue):
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            claimed_path = os.path.join(self.processed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed_path)
            except OSError:
                continue  # another reader claimed it first
            try:
                with open(claimed_path, "rb") as message_file:
                    payload = message_file.read()
            finally:
                os.remove(claimed_path)
            return loads(bytes_to_str(payload))
        raise Empty()


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = AtomicFilesystemChannel
    global_state = filesystem.Transport.global_state


def transport_options(folder: str) -> dict:
    """Broker options for one shared folder; creates the folders the transport expects."""
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
    }
