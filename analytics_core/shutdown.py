"""Delivering what every client holds when the process is about to end.

One entry point for every way a process ends (``atexit``, a multiprocessing or billiard
finalizer, a job worker's hook, SIGTERM): :func:`shutdown_clients`.
"""

import logging
from typing import Iterable, Optional

logger = logging.getLogger("segment")

__all__ = ["shutdown_clients"]


def shutdown_clients(clients: Iterable, timeout: Optional[float] = None) -> bool:
    """Deliver what each client that sends from a background queue holds, then stop it; what
    is not delivered in time is reported to its ``on_error`` (or stays in its spool).

    ``timeout``: seconds for all of them together; None: the largest ``shutdown_timeout`` among
    them. Returns True when everything was delivered or reported in time. Never raises.
    """
    sending = [client for client in clients if client.send and not client.sync_mode]
    finished = True
    for client in sending:
        try:
            finished = (
                client.shutdown(client.shutdown_timeout if timeout is None else timeout)
                and finished
            )
        except Exception:  # one broken client must not stop the others from delivering
            logger.exception("analytics: delivering at exit failed")
            finished = False
        client.pipeline.close_spool()
    return finished
