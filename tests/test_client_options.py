"""Options of a Client as code written for analytics-python reads them (issue 14, part 2)."""

import pytest

import analytics_core
from analytics_core import ValidationError


def test_the_options_given_are_readable_as_attributes():
    client = analytics_core.Client(
        "k",
        send=False,
        timeout=3,
        max_retries=2,
        max_queue_size=50,
        upload_size=7,
        upload_interval=0.25,
        thread=2,
        proxies={"https": "http://proxy.local:3128"},
    )
    assert (client.timeout, client.max_retries, client.max_queue_size) == (3, 2, 50)
    assert (client.upload_size, client.upload_interval, client.thread) == (7, 0.25, 2)
    assert client.proxies == {"https": "http://proxy.local:3128"}
    assert client.persist is None and client.log_handler is None


@pytest.mark.parametrize("falsy", [False, None, 0, ""])
def test_a_falsy_on_error_means_none_as_in_analytics_python(falsy):
    # Segment's own tests set on_error = False.
    client = analytics_core.Client("k", send=False, on_error=falsy)
    assert client.track("u", "Event")[0]


def test_an_on_error_that_cannot_be_called_is_still_refused():
    with pytest.raises(ValidationError, match="on_error"):
        analytics_core.Client("k", send=False, on_error="log it")


def test_api_error_is_where_analytics_python_keeps_it():
    from analytics_core.request import APIError

    assert APIError is analytics_core.APIError
