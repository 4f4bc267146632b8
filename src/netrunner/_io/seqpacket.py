"""Reading one record from a ``SOCK_SEQPACKET`` socket, believing an end of
file only when it is certain.

Linux's receive on a non-blocking ``AF_UNIX``/``SOCK_SEQPACKET`` socket
first tries to take a record from the queue and, finding none, then checks
whether the peer has hung up -- two steps, not one. A peer that queues its
last record and closes its end between the two makes that receive report
the end of file with the record still queued: a shepherd's ``S_EXITED``,
sent right before it exits, read as "the shepherd exited unexpectedly". The
record is not lost: the peer queued it before its hang-up was recorded, so
a receive that starts after the hang-up was seen finds it. An end of file
is therefore believed only when a second receive reports it too.

The sockets read here are non-blocking, or have a timeout (non-blocking
underneath). A blocking receive looks at the queue once more before it
reports a hang-up, which narrows the window without closing it; the
shepherd and the zygote read twice too (``nr_recv_record`` in the
shepherd's ``fds.c``).
"""

from __future__ import annotations

import socket

__all__ = ["receive"]

_Ancillary = list[tuple[int, int, bytes]]


def receive(sock: socket.socket, room: int, ancillary: int = 0, flags: int = 0) -> tuple[bytes, _Ancillary]:
    """One record (at most ``room`` bytes) and its ancillary data (up to
    ``ancillary`` bytes of it; ``recvmsg`` ``flags``), or ``b""`` at the
    end of file. Raises what the receive raises (``BlockingIOError`` when
    nothing is queued). A record of zero bytes cannot be told from the end
    of file: a protocol spoken through this has none."""
    for _ in range(2):
        if ancillary:
            record, data, _, _ = sock.recvmsg(room, ancillary, flags)
        else:
            record, data = sock.recv(room, flags), []
        if record:
            return record, data
    return b"", data
