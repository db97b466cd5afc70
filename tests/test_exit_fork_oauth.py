"""Forking while the uploader fetches an OAuth token: the child gets its own lock and session.

The token endpoint is a real HTTP server whose first answer takes seconds; the process forks
while the parent's uploader waits for it (holding the token manager's lock). Before: the child
inherited the lock held, with no thread to release it, so its ``flush()`` returned False after
its whole timeout (8 s of 8), and it posted through the parent's pooled ``requests.Session``.
"""

import http.server
import json
import os
import threading
import time

import pytest

from analytics_core import Client
from tests.support.forking import wait_child
from tests.support.keys import rsa_key_pair

pytestmark = [
    pytest.mark.analytics_send,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def private_key():
    return rsa_key_pair()[0]


class TokenServer(http.server.ThreadingHTTPServer):
    """An OAuth token endpoint whose first answer waits until ``release`` is set."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TokenHandler)
        self.asked = threading.Event()
        self.release = threading.Event()
        self.peers = []  # (client address) of each token request
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        server = self.server
        first = not server.peers
        server.peers.append(self.client_address)
        if first:
            server.asked.set()
            server.release.wait(20)  # slow: the test forks meanwhile
        body = json.dumps({"access_token": "token", "expires_in": 3600}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def token_server():
    server = TokenServer()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def test_fork_during_a_token_fetch(collector, token_server, private_key):
    client = Client(
        "key",
        host=collector.url,
        upload_interval=0.01,
        oauth_client_id="client-id",
        oauth_client_key=private_key,
        oauth_key_id="key-id",
        oauth_auth_server=token_server.url,
    )
    manager = client.transport._token_provider
    parent_session = manager._session
    client.track("parent", "Before fork")
    assert token_server.asked.wait(10)  # the uploader is inside the fetch, holding the lock
    assert manager._fetch_lock.locked()

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(read)
            client.track("child", "In child")
            started = time.monotonic()
            flushed = client.flush(timeout=8)
            facts = {
                "flushed": flushed,
                "seconds": time.monotonic() - started,
                "lock_held": manager._fetch_lock.locked(),
                "same_session": manager._session is parent_session,
            }
            os.write(write, json.dumps(facts).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    assert wait_child(pid, 30.0) == 0
    with os.fdopen(read) as pipe:
        facts = json.loads(pipe.read())
    assert facts["flushed"] is True, facts  # was False after all 8 s
    assert facts["seconds"] < 5, facts
    assert facts["lock_held"] is False
    assert facts["same_session"] is False
    (child_event,) = collector.wait_for(1, user_id="child")
    assert child_event["event"] == "In child"
    # The child asked for its own token on a connection of its own.
    assert len(token_server.peers) == 2 and token_server.peers[0] != token_server.peers[1]

    token_server.release.set()  # the parent's fetch ends; the parent still delivers its own
    assert client.flush(timeout=10) is True
    assert [event["event"] for event in collector.events(user_id="parent")] == ["Before fork"]
    assert manager._session is parent_session  # the parent's is untouched
    client.shutdown()


def test_a_session_passed_in_is_left_to_its_owner(private_key):
    import requests

    from analytics_core.oauth import OAuthTokenManager

    session = requests.Session()
    own = OAuthTokenManager("id", private_key, "kid")
    given = OAuthTokenManager("id", private_key, "kid", session=session)
    own_session, own_lock = own._session, own._fetch_lock
    own._fetch_lock.acquire()
    own.reset_after_fork()
    given.reset_after_fork()
    assert own._session is not own_session and not own._fetch_lock.locked()
    assert own._fetch_lock is not own_lock
    assert given._session is session
