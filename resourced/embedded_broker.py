"""The embedded broker of `make run` and the tests: kombu's filesystem transport, made safe for
several processes.

kombu's filesystem channel writes a message under its final name and a consumer may pick the file
up before it is complete (an empty or cut payload, which stops the worker). Here a message is
written under a hidden folder and renamed into the queue folder when complete; a rename is atomic,
so a consumer only ever sees whole messages. Fanout (remote control, events) works as in kombu.
"""

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

INCOMING = ".incoming"  # its name has no ".<queue>.msg" suffix, so consumers never take it


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        incoming = os.path.join(self.data_folder_out, INCOMING)
        partial = os.path.join(incoming, name)
        try:
            os.makedirs(incoming, exist_ok=True)
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
