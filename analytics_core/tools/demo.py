"""The embedded default: a local collector, an example shop sending real traffic through it, and
the debugger page to watch it. No Segment account is needed.

Run with ``make demo`` or ``python -m analytics_core.demo``:

1. a local collector starts on 127.0.0.1 (port 8086 if free);
2. every call type is sent through the module-level API;
3. when run from a clone, the Flask example shop (``example_projects/flask_app``) starts on
   127.0.0.1 and a scripted visitor browses it: the home page, signing in, two orders, signing
   out, so its page, identify and track events arrive with their request context;
4. what arrived is printed, and the collector keeps running so its debugger page can be opened,
   until Ctrl-C (``--exit`` stops at once: for scripts and tests).
"""

import argparse
import datetime
import importlib.util
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, List, Optional

import analytics_core as analytics
from analytics_core.collector import Collector
from analytics_core.collector.access import write_key_fingerprint
from analytics_core.threads import start_thread

DEFAULT_PORT = 8086
SHOP = Path(__file__).resolve().parents[2] / "example_projects" / "flask_app" / "app.py"


def send_every_call(url: str) -> int:
    """Send one message of each of the six types through the module-level API; return how many."""
    analytics.write_key = "demo-write-key"
    analytics.host = url
    analytics.on_error = lambda error, items: print(f"on_error: {error} ({len(items)} messages)")
    when = datetime.datetime.now(datetime.timezone.utc)
    analytics.identify("user-42", {"email": "ada@example.com", "plan": "pro"})
    analytics.track(
        "user-42", "Order Completed", {"order_id": "o-1", "revenue": 99.5}, timestamp=when
    )
    analytics.page("user-42", "Docs", "Quickstart", {"url": "https://example.com/docs/quickstart"})
    analytics.screen("user-42", "Settings", "Notifications", {"platform": "ios"})
    analytics.group("user-42", "company-7", {"name": "Initech", "employees": 120})
    analytics.alias("anonymous-visitor-9", "user-42")
    analytics.flush()
    return 6


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _load_shop(collector_url: str) -> Any:
    """The example shop's Flask app, pointed at this collector (None when not in a clone)."""
    if not SHOP.is_file() or importlib.util.find_spec("flask") is None:
        return None
    os.environ["ANALYTICS_HOST"] = collector_url
    os.environ.setdefault("ANALYTICS_WRITE_KEY", "demo-shop-write-key")
    spec = importlib.util.spec_from_file_location("analytics_demo_shop", SHOP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def browse_the_shop(collector_url: str) -> int:
    """Serve the example shop on 127.0.0.1 and browse it as a visitor; the requests made."""
    import requests
    from werkzeug.serving import make_server

    app = _load_shop(collector_url)
    if app is None:
        print("(the example shop is not here: run the demo from a clone to see it)")
        return 0
    server = make_server("127.0.0.1", 0, app, threaded=True)
    start_thread(server.serve_forever, (), "analytics-core-demo-shop")
    shop = f"http://127.0.0.1:{server.server_port}"
    print(f"example shop (Flask, analytics_flask) serving on {shop}")
    visitor = requests.Session()
    visitor.headers["User-Agent"] = "Mozilla/5.0 (analytics-core demo visitor)"
    visitor.headers["Accept-Language"] = "en-GB,en;q=0.8"
    # A first visit: no ajs_anonymous_id cookie yet. The shop's first page view mints the
    # visitor's anonymous id and hands it back as that cookie, which the visitor then sends.
    steps = [
        ("GET", "/", None),
        ("POST", "/login", {"username": "ada"}),
        ("POST", "/orders", {"product": "Rubber duck", "price": "9.5"}),
        ("POST", "/orders", {"product": "Teapot", "price": "39.9"}),
        ("POST", "/logout", None),
    ]
    try:
        for method, path, form in steps:
            response = visitor.request(method, shop + path, data=form, timeout=10)
            minted = response.cookies.get("ajs_anonymous_id")
            given = f" (set-cookie ajs_anonymous_id={minted})" if minted else ""
            print(f"  visitor: {method} {path} -> {response.status_code}{given}")
        app.extensions["analytics"].client.flush(timeout=10)
    finally:
        server.shutdown()
    return len(steps)


def _summary(message: Any) -> str:
    fields = ("type", "userId", "anonymousId", "event", "name", "groupId", "previousId")
    summary = {key: message.get(key) for key in fields if message.get(key) is not None}
    page = (message.get("context") or {}).get("page")
    if page:
        summary["page"] = page.get("path")
    return json.dumps(summary)


def main(argv: Optional[List[str]] = None) -> int:
    """Start the collector, send the traffic, print what arrived, keep serving the debugger."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--port", type=int, default=None, help=f"collector port (default {DEFAULT_PORT} if free)"
    )
    parser.add_argument(
        "--exit", action="store_true", help="stop after printing, do not keep the collector up"
    )
    args = parser.parse_args(argv)
    port = args.port
    if port is None:
        port = DEFAULT_PORT if _port_is_free(DEFAULT_PORT) else 0
    with Collector(host="127.0.0.1", port=port) as collector:
        print(f"local collector listening on {collector.url}")
        sent = send_every_call(collector.url)
        browse_the_shop(collector.url)
        stored = list(reversed(collector.events(limit=0)))
        for message in stored:
            print("  " + _summary(message))
        direct_key = write_key_fingerprint("demo-write-key")
        direct = [m for m in stored if m.get("_write_key_fingerprint") == direct_key]
        print(
            f"sent {sent} calls directly and browsed the shop; the collector stored "
            f"{len(stored)} messages ({len(direct)} direct, {len(stored) - len(direct)} from "
            "the shop)"
        )
        analytics.shutdown()
        ok = len(direct) == sent
        if args.exit:
            return 0 if ok else 1
        print(f"\nOpen {collector.url}/ to see every event in the debugger page. Ctrl-C stops.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopped")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
