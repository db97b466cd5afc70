"""A program that runs uvicorn itself: uvicorn imports the app (and the client is made) inside
``Server.capture_signals``, while uvicorn's own SIGTERM handler is installed, as it does for
each of several workers or under ``--reload``.

``python uvicorn_embedded.py PORT [own-handler]`` (see stopped.py for the environment).
Without ``own-handler`` uvicorn finds the default disposition, puts it back after its graceful
shutdown and raises SIGTERM again: the process dies by it. With it, the program's handler is
what uvicorn puts back and re-raises to; the program goes on, prints the signals its main
thread blocks and how a subprocess it starts reacts to ``terminate()``, and exits normally.
"""

import signal
import sys

import uvicorn

from tests.signal_scripts.stopped import say, terminate_a_child


def main(port: int, own_handler: bool) -> None:
    received = []
    if own_handler:
        signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    config = uvicorn.Config(
        "tests.signal_scripts.uvicorn_app:app",
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
    )
    uvicorn.Server(config).run()
    say("uvicorn returned", received)
    terminate_a_child()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:] == ["own-handler"])
