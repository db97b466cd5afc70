"""The optional Celery task context (``analytics_celery.setup(app, task_context=True)``), in
the test process: tasks run eagerly (``apply()``), which sends the same task_prerun and
task_postrun signals a worker does. The real-worker case is in tests/test_jobs_celery.py."""

import analytics_celery
import pytest
from celery import Celery

from analytics_core import Client, ValidationError, current_request_context


@pytest.fixture
def client():
    # send=False: nothing to deliver; the test capture still gets every accepted message.
    return Client(send=False)


@pytest.fixture
def app(client):
    # shared=False below: each test's tasks are its own app's (with its own client), not
    # registered with every app of the process.
    app = Celery("context-tests", broker="memory://")
    analytics_celery.setup(app, task_context=True)

    @app.task(name="ctx.track", shared=False)
    def track(event, context=None):
        return client.track("u1", event, context=context)[0]

    @app.task(name="ctx.outer", shared=False)
    def outer():
        client.track("u1", "Outer Before")
        track.apply(args=["Inner"])
        client.track("u1", "Outer After")

    @app.task(name="ctx.anonymous", shared=False)
    def anonymous():
        return client.track(event="No Ids")

    return app


def tasks_of(analytics_events):
    return {m["event"]: m["context"].get("task") for m in analytics_events.tracked()}


def test_each_message_names_its_task(app, analytics_events):
    result = app.tasks["ctx.track"].apply(args=["Email Sent"], task_id="t-1")
    assert result.get() is True
    (message,) = analytics_events.tracked("Email Sent")
    assert message["context"]["task"] == {"name": "ctx.track", "id": "t-1"}
    assert message["context"]["library"]["name"] == "analytics-core"
    assert current_request_context() is None  # nothing is left behind after the task


def test_the_callers_context_wins_key_by_key(app, analytics_events):
    context = {"task": {"id": "mine"}, "ip": "10.0.0.1"}
    app.tasks["ctx.track"].apply(args=["Explicit", context], task_id="t-2")
    (message,) = analytics_events.tracked("Explicit")
    assert message["context"]["task"] == {"name": "ctx.track", "id": "mine"}
    assert message["context"]["ip"] == "10.0.0.1"


def test_a_task_run_inside_another_has_its_own_context(app, analytics_events):
    app.tasks["ctx.outer"].apply(task_id="outer-1")
    assert tasks_of(analytics_events) == {
        "Outer Before": {"name": "ctx.outer", "id": "outer-1"},
        "Inner": {"name": "ctx.track", "id": tasks_of(analytics_events)["Inner"]["id"]},
        "Outer After": {"name": "ctx.outer", "id": "outer-1"},
    }
    assert tasks_of(analytics_events)["Inner"]["id"] != "outer-1"


def test_a_call_without_ids_is_not_given_an_anonymous_id(app, analytics_events):
    # A web request mints an anonymous id for its visitor; a task has none to mint for.
    with pytest.raises(ValidationError, match="user_id or anonymous_id"):
        app.tasks["ctx.anonymous"].apply(throw=True)
    assert analytics_events.tracked() == []


def test_other_apps_tasks_and_code_outside_tasks_are_left_alone(app, client, analytics_events):
    other = Celery("other-app", broker="memory://")

    @other.task(name="other.track", shared=False)
    def other_track():
        client.track("u1", "Other App")

    other_track.apply()
    client.track("u1", "Outside")
    assert tasks_of(analytics_events) == {"Other App": None, "Outside": None}


@pytest.mark.analytics_send  # outside the test capture, as in production
def test_an_invalid_call_in_a_task_is_reported_not_raised():
    errors = []
    client = Client(send=False, on_error=lambda error, items: errors.append(error))
    app = Celery("context-invalid", broker="memory://")
    analytics_celery.setup(app, task_context=True)

    @app.task(name="ctx.invalid", shared=False)
    def invalid():
        return client.track("u1", "Bad Properties", properties=["not", "a", "dict"])[0]

    @app.task(name="ctx.no_ids", shared=False)
    def no_ids():
        return client.track(event="No Ids")[0]

    assert invalid.apply(throw=True).get() is False
    assert no_ids.apply(throw=True).get() is False
    assert [str(error) for error in errors] == [
        "properties must be a dict, got list",
        "either user_id or anonymous_id is required",
    ]
