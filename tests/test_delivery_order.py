"""Delivery order against the real collector: one uploader's batches arrive in the order the
messages were tracked, even while the queue runs ahead of slow POSTs."""

import pytest

from analytics_core import Client
from analytics_core.transport import RetryPolicy


@pytest.fixture
def clients():
    made = []
    yield made
    for client in made:
        client.shutdown(timeout=2)


def make(clients, collector, **options):
    client = Client("wk-order", host=collector.url, **options)
    client.transport.retry = RetryPolicy(max_retries=0, base=0.01, cap=0.05)
    clients.append(client)
    return client


def stored_ids(collector):
    return [event["messageId"] for event in collector.events(limit=0, order="asc")]


def test_batches_arrive_in_the_order_tracked(clients, collector):
    # Each POST is held 20 ms, so the queue fills up behind the uploader.
    collector.set_faults([{"status": 200, "delay": 0.02, "times": 1000}])
    client = make(clients, collector, upload_size=50, max_queue_size=10_000)
    ids = [f"m-{n:05d}" for n in range(3000)]
    for message_id in ids:
        client.track("u", "Ordered", message_id=message_id)
    assert client.flush(timeout=60)
    assert stored_ids(collector) == ids
