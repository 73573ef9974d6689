"""How large a request body the scoring API reads, and how long a request may wait for its
answer.

Neither BentoML nor uvicorn caps a request body. The largest batch the schema allows
(``MAX_BATCH_LIMIT`` leads with 64-character ids and 200-character titles) is about 3 MB, so
4 MiB refuses nothing legitimate and stops a 50 MB body before it is read into memory.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 4 * 1024 * 1024


def too_large(max_bytes: int) -> str:
    return f"request body over {max_bytes} bytes: send fewer leads per batch"


class BodySizeLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, at once when its Content-Length
    says so, else as soon as the bytes received pass it (a chunked body). The second case
    raises an ``HTTPException`` from ``receive``, which the app's handler turns into JSON."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": too_large(self.max_bytes)}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, too_large(self.max_bytes))
            return message

        await self.app(scope, counted, send)


class RequestTimeout:
    """ASGI middleware: a 504 when a request has not begun its answer within ``timeout``
    seconds, its timer cancelled as soon as the answer begins.

    It stands in for BentoML's ``TimeoutMiddleware`` (the service's ``traffic.timeout``), which
    answers the same way but leaves each request's timer scheduled for the whole timeout. The
    timer holds the request's context (its tracing span with the span's locks and lists) and a
    future, about twenty objects a request: at 330 requests a second and a 30 s timeout,
    200,000 objects that every full garbage collection walks, and pauses of 100 ms that grow
    with the load. Here the timer is gone when the answer starts. WebSocket scopes pass through
    (a 504 is an HTTP answer).
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app, self.timeout = app, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        begun = False

        async def answer(message: Message) -> None:
            nonlocal begun
            if not begun:
                begun = True
                deadline.reschedule(None)  # the answer has started: it may take its time
            await send(message)

        try:
            async with asyncio.timeout(self.timeout) as deadline:
                await self.app(scope, receive, answer)
        except TimeoutError:
            if begun or not deadline.expired():  # not ours: the app's own error
                raise
            error = f"Not able to process the request in {self.timeout} seconds"
            await JSONResponse({"error": error}, status_code=504)(scope, receive, send)
