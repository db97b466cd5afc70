"""analytics_asgi: SegmentMiddleware's options are checked once, with errors that name them."""

import inspect
import logging

import pytest
from analytics_asgi import SegmentMiddleware
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import analytics_core
from analytics_core import Client, ValidationError

from .asgi_apps.support import TestClient


async def app(scope, receive, send):
    pass


def test_every_client_option_is_a_middleware_option():
    client_options = [p for p in inspect.signature(Client).parameters if p != "self"]
    middleware_options = inspect.signature(SegmentMiddleware).parameters
    missing = [name for name in client_options if name not in middleware_options]
    assert missing == []
    assert all(
        middleware_options[name].kind is inspect.Parameter.KEYWORD_ONLY
        for name in middleware_options
        if name != "app"
    )


def test_client_options_build_a_client_with_them():
    handler = logging.NullHandler()
    middleware = SegmentMiddleware(
        app,
        write_key="key-1",
        host="https://events.eu1.segmentapis.com",
        gzip=True,
        max_queue_size=5,
        upload_size=7,
        upload_interval=2.5,
        max_retries=3,
        timeout=4,
        thread=2,
        sync_mode=False,
        debug=False,
        send=True,
        proxies={"https": "http://proxy.test:3128"},
        log_handler=handler,
        shutdown_timeout=3,
        on_error=print,
    )
    client = middleware.client
    try:
        assert isinstance(client, Client)
        assert client.write_key == "key-1"
        assert client.transport.url.startswith("https://events.eu1.segmentapis.com")
        assert client.gzip is True
        assert client.pipeline.max_queue_size == 5
        assert client.pipeline.upload_size == 7
        assert client.pipeline.upload_interval == 2.5
        assert client.pipeline.thread_count == 2
        assert client.shutdown_timeout == 3
        assert client.on_error is print
        assert handler in logging.getLogger("segment").handlers
    finally:
        client.shutdown(timeout=1)


def test_left_out_options_keep_the_clients_defaults():
    client = SegmentMiddleware(app, write_key="key-2").client
    default = Client("key-2")
    for built in (client, default):
        built.shutdown(timeout=1)
    assert client.pipeline.upload_size == default.pipeline.upload_size
    assert client.pipeline.upload_interval == default.pipeline.upload_interval
    assert client.shutdown_timeout == default.shutdown_timeout
    assert client.transport.url == default.transport.url


def test_no_client_and_no_options_means_the_module_level_client():
    middleware = SegmentMiddleware(app)
    assert middleware.client is None
    assert analytics_core.default_client is None  # nothing built until it is used


def test_a_given_client_is_used_as_it_is():
    client = Client(send=False)
    assert SegmentMiddleware(app, client=client).client is client


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"client": Client(send=False), "write_key": "k"}, "either client= or client options"),
        ({"client": Client(send=False), "host": "h", "gzip": True}, "client= and gzip, host"),
        ({"client": "not a client"}, "client must be an analytics_core.Client, got str"),
        ({"trusted_proxies": -1}, "trusted_proxies must be an integer >= 0, got -1"),
        ({"trusted_proxies": True}, "trusted_proxies must be an integer >= 0, got True"),
        ({"trusted_proxies": "1"}, "trusted_proxies must be an integer >= 0, got '1'"),
        ({"pageviews": "yes"}, "pageviews must be True or False, got 'yes'"),
        ({"user_id_from_scope": "user.id"}, "user_id_from_scope: cannot import 'user.id'"),
        ({"user_id_from_scope": 42}, "user_id_from_scope must be a callable or its dotted path"),
        ({"forwarded_header": "X Forwarded"}, "forwarded_header"),
        ({"anonymous_id_cookie": "yes"}, "anonymous_id_cookie must be True or False"),
        ({"anonymous_id_cookie_domain": "a b"}, "anonymous_id_cookie_domain must be a domain"),
        ({"pageviews_exclude": ["static"]}, "pageviews_exclude: 'static'"),
        ({"write_key": "k", "debug": "yes"}, "debug must be a bool, got 'yes'"),
        ({"write_key": "k", "host": 8086}, "host must be a str, got 8086"),
        ({"write_key": "k", "proxies": ["p"]}, "proxies must be a dict"),
        ({"write_key": "k", "max_queue_size": 0}, "max_queue_size must be an integer >= 1"),
        ({"write_key": "k", "upload_interval": -1}, "upload_interval must be a number >= 0"),
        ({"write_key": "k", "on_error": "log"}, "on_error must be callable"),
        ({"write_key": 42}, "write_key must be a string"),
        ({"write_key": "k", "oauth_client_id": "id"}, "missing: oauth_client_key, oauth_key_id"),
    ],
)
def test_bad_options_are_refused_by_name(options, message, caplog):
    with caplog.at_level(logging.ERROR, logger="segment"):
        middleware = SegmentMiddleware(app, **options)
    error = middleware.setup_error
    assert isinstance(error, ValidationError)
    assert isinstance(error, ValueError)
    assert str(error).startswith("SegmentMiddleware: ")
    assert message in str(error)
    assert message in caplog.text  # said when the app is built, not only at startup
    # The lifespan's startup fails with it: the server stops there, saying why.
    with (
        pytest.raises(ValidationError, match="^SegmentMiddleware: ") as raised,
        TestClient(middleware),
    ):
        pass
    assert raised.value is error
    # It sends nothing, whatever the options said.
    assert middleware.client is not None
    assert middleware.client.send is False


@pytest.mark.parametrize(
    "options",
    [
        # The README's own line on a machine without SEGMENT_WRITE_KEY, alone and with a host.
        {"write_key": None},
        {"write_key": None, "host": "http://127.0.0.1:9"},
        {"host": "http://127.0.0.1:9"},
        {"write_key": ""},
    ],
)
def test_without_a_write_key_the_app_serves_and_sends_nothing(options, caplog):
    # Before, the first two gave an HTTP 500 on every tracking request (the module-level client,
    # unconfigured, raised inside the request) or on every request at all (the middleware's
    # client refused to be built when Starlette built its middleware stack, lifespan included).
    async def tracked(request):
        analytics_core.track(event="No Key")
        return PlainTextResponse("ok")

    starlette = Starlette(routes=[Route("/", tracked)])
    with caplog.at_level(logging.WARNING, logger="segment"):
        starlette.add_middleware(SegmentMiddleware, **options)
        with TestClient(starlette) as http:
            response = http.get("/")
    assert response.status_code == 200
    assert "SegmentMiddleware: no write_key" in caplog.text
    # The middleware's own client, which sends nothing; never the module-level one.
    (middleware,) = [
        layer
        for layer in _layers(starlette.middleware_stack)
        if isinstance(layer, SegmentMiddleware)
    ]
    assert middleware.client is not None
    assert middleware.client.send is False
    assert analytics_core.default_client is None or analytics_core.default_client.write_key


def _layers(app):
    while app is not None:
        yield app
        app = getattr(app, "app", None)


def test_unknown_options_and_positional_options_are_type_errors():
    with pytest.raises(TypeError, match="upload_intervall"):
        SegmentMiddleware(app, upload_intervall=1)
    with pytest.raises(TypeError):
        SegmentMiddleware(app, "write-key")


def test_the_app_must_be_callable():
    with pytest.raises(ValidationError, match="app must be an ASGI callable"):
        SegmentMiddleware(None)


def test_with_starlette_the_error_surfaces_when_the_app_starts():
    # Starlette builds its middleware stack on the first call (the lifespan's, in a server).
    bad = Starlette()
    bad.add_middleware(SegmentMiddleware, trusted_proxies=-2)
    with pytest.raises(ValidationError, match="trusted_proxies"), TestClient(bad):
        pass


def _tracking_app_with(**options):
    async def tracked(request):
        analytics_core.track(event="Bad Options")
        return PlainTextResponse("ok")

    starlette = Starlette(routes=[Route("/", tracked)])
    starlette.add_middleware(SegmentMiddleware, **options)
    return starlette


@pytest.mark.parametrize(
    "options",
    [
        {"trusted_proxies": -1},
        {"write_key": "k", "shutdown_timeout": float("nan")},
        {"write_key": "k", "persist": "/nonexistent-analytics-dir/spool.db"},
    ],
)
def test_without_a_lifespan_a_bad_option_never_answers_a_request_with_a_500(options, caplog):
    # uvicorn --lifespan off, or a server without the lifespan protocol: nothing can stop the
    # app at startup. Before, Starlette's build of the middleware stack raised on every request.
    with caplog.at_level(logging.ERROR, logger="segment"):
        http = TestClient(_tracking_app_with(**options))  # not entered: no lifespan
        responses = [http.get("/") for _ in range(3)]
    assert [response.status_code for response in responses] == [200, 200, 200]
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text  # once, when the stack was built
    assert "SegmentMiddleware: " in errors[0].getMessage() or "spool" in errors[0].getMessage()
    assert "will not be sent" in errors[0].getMessage()


def test_a_spool_that_cannot_be_opened_fails_the_startup_naming_the_path():
    from analytics_core.spool import SpoolError

    bad = _tracking_app_with(write_key="k", persist="/nonexistent-analytics-dir/spool.db")
    with (
        pytest.raises(SpoolError, match="nonexistent-analytics-dir.*does not exist"),
        TestClient(bad),
    ):
        pass
