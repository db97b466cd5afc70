"""Each task's messages name the task: ``context.task = {"name": ..., "id": ...}``.

Celery's ``task_prerun`` and ``task_postrun`` signals bracket every task, in the thread that runs
it, whatever the pool. While a task runs, a :class:`TaskContext` is the current request context
of :mod:`analytics_core.context`: the client merges it into each message as it merges a web
request's (a ``context`` the call passes wins key by key), and a process that never turns this
on pays nothing for it.
"""

import threading
import weakref
from typing import Any, List, Optional

from celery import signals

from analytics_core.context import RequestContext, reset_request_context, set_request_context
from analytics_core.errors import ValidationError

__all__ = ["TaskContext", "connect_task_context"]

_UID = "analytics_celery.task_context"

_apps: "weakref.WeakSet[Any]" = weakref.WeakSet()
_every_app = False
_local = threading.local()


class TaskContext(RequestContext):
    """The context of one running task.

    Unlike a web request's, a task has no visitor: a call that names no user is an error
    rather than a new anonymous id.
    """

    __slots__ = ()

    def mint_anonymous_id(self) -> str:
        """A task has no visitor to mint an id for: the call must name one."""
        raise ValidationError("either user_id or anonymous_id is required")


def connect_task_context(app: Any = None) -> None:
    """Put the task into the context of ``app``'s tasks (every app's when None); idempotent."""
    global _every_app
    if app is None:
        _every_app = True
    else:
        _apps.add(app)
    signals.task_prerun.connect(_enter, weak=False, dispatch_uid=_UID)
    signals.task_postrun.connect(_leave, weak=False, dispatch_uid=_UID)


def _tokens() -> List[Any]:
    # A stack per thread: a task may run another one eagerly (task.apply()) inside it.
    tokens = getattr(_local, "tokens", None)
    if tokens is None:
        tokens = _local.tokens = []
    return tokens


def _enter(sender: Any = None, task_id: Optional[str] = None, task: Any = None, **_: Any) -> None:
    task = task if task is not None else sender
    token = None
    if _every_app or getattr(task, "app", None) in _apps:
        name = getattr(task, "name", None)
        token = set_request_context(TaskContext(context={"task": {"name": name, "id": task_id}}))
    _tokens().append(token)  # None too: the matching postrun pops it


def _leave(sender: Any = None, **_: Any) -> None:
    tokens = _tokens()
    if not tokens:
        return
    token = tokens.pop()
    if token is None:
        return
    try:
        reset_request_context(token)
    except (ValueError, RuntimeError):  # set in another context (should not happen): clear it
        set_request_context(None)
