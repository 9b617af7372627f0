"""The exceptions the actor kernel raises.

    ActorError                     base of everything below
    ├── ActorStopped               the actor is gone (a send to it, or an ask awaiting it)
    ├── MailboxFull                send_nowait found the mailbox full (also trio.WouldBlock)
    └── RestartIntensityExceeded   a supervisor gave up after too many restarts

An exception raised by an actor's own handler during an `ask` is not wrapped:
it is re-raised in the caller as it is.
"""

from __future__ import annotations

from collections.abc import Iterator

import trio


class ActorError(Exception):
    """Base class of the kernel's own exceptions."""


class ActorStopped(ActorError):
    """The actor has stopped, or stopped before it could reply.

    Raised by `send`, `send_nowait` and `ask` on a stopped actor (each such send
    also counts a dead letter), and by an `ask` whose actor stops or crashes
    while the request is queued or being handled. Unlike `MailboxFull`, trying
    again never helps: the actor will not come back under this reference.
    """


class MailboxFull(ActorError, trio.WouldBlock):
    """`send_nowait` found the actor's mailbox at capacity.

    The message was not queued. The actor is alive: `await ref.send(...)`
    waits for room instead, which is how backpressure reaches the sender.
    """


class RestartIntensityExceeded(ActorError):
    """A supervisor saw more restarts within its window than it allows.

    It has stopped all of its children, in reverse start order, and escalates
    to its parent; the root supervisor raises it out of `open_actor_system`.
    The crash that tipped it over is chained as ``__cause__``.
    """


def raise_if_alone(group: BaseExceptionGroup[BaseException], error: BaseException | None) -> None:
    """Raise `error` itself if it is all that `group` holds, at any depth.

    For a context manager that runs the caller's block inside a nursery of
    its own: trio wraps whatever the block raised in an exception group, and
    the caller, who opened no nursery, should get their exception as raised.
    Returns (so that the caller re-raises `group`) if anything else failed too.
    """
    if error is None:
        return
    # The same exceptions, however trio regrouped them (a group it split to
    # take out its Cancelled is a copy): `error` itself, a group included.
    if [id(leaf) for leaf in _leaves(group)] == [id(leaf) for leaf in _leaves(error)]:
        # Raised again here, `error` would have the group as its context and
        # lose its own chain (`raise ... from`): it leaves as it came.
        cause, context, suppress = error.__cause__, error.__context__, error.__suppress_context__
        try:
            raise error
        finally:
            error.__cause__, error.__context__ = cause, context
            error.__suppress_context__ = suppress


def _leaves(error: BaseException) -> Iterator[BaseException]:
    """The exceptions in `error`, through every group, in order."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error
