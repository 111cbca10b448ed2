"""The streamed liveness session over a WebSocket: ``/v1/liveness/stream``.

Why a WebSocket: the server must reveal each step the moment the previous one is covered and
stamp every frame's arrival on its own clock; a request/response upload cannot do either. The
protocol (messages, timings, limits, errors) is in docs/liveness-protocol.md. This module only
speaks it: authentication (an API key in a header or the start message, or a capture token),
the receive loop with its deadlines, and the verdict; timing and judging are in
``facegate.service.stream`` and ``facegate.liveness.stream``. Blocking work (the store, the
judge) runs off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from facegate.errors import (
    FacegateError,
    ForbiddenError,
    InputError,
    RateLimitedError,
    UnauthenticatedError,
)
from facegate.service import Caller, FaceService
from facegate.service.stream import StreamRun
from facegate.web.middleware import RateLimits, client_address
from facegate.web.routers import Router

router = Router(tags=["liveness"])
START_TIMEOUT_S = 10.0
MAX_CONTROL_BYTES = 8192
TICK_S = 0.2
CAPTURE_PREFIX = "capture:"


def now_ms() -> float:
    return time.monotonic() * 1000


async def send_error(ws: WebSocket, exc: FacegateError) -> None:
    """A refusal before the session starts (nothing was counted), then close: 4000 + status."""
    await ws.send_json({"type": "error", "code": exc.code, "status": exc.status,
                        "message": str(exc), **_plain(exc.details)})  # fmt: skip
    await ws.close(code=4000 + exc.status)


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if isinstance(v, str | int | float | bool)}


@dataclass(frozen=True)
class Opened:
    """Who starts the check and for what; a capture link may fix actions and the flash."""

    caller: Caller
    subject_id: str | None
    purpose: str | None
    link: str | None = None
    actions: tuple[str, ...] | None = None
    flash: bool | None = None


async def authenticate(
    ws: WebSocket, svc: FaceService, limits: RateLimits, start: dict[str, Any]
) -> Opened:
    """Caller, subject id, purpose (and a capture link's id and options) from the headers or
    the start message. A capture token fixes subject and flow (and, on an evaluation tenant,
    perhaps the actions and the flash); an API key needs ``subject_id`` and ``purpose``."""
    address = client_address(ws.scope, limits.proxies)
    auth = ws.headers.get("authorization", "")
    key = auth[7:] if auth.lower().startswith("bearer ") else ws.headers.get("x-api-key", "")
    key = key or str(start.get("key") or "")
    capture = ws.headers.get("x-capture-token", "") or str(start.get("capture_token") or "")
    if capture:
        if await run_in_threadpool(limits.for_capture_link, capture):
            raise _limited()
        try:
            opened = await run_in_threadpool(svc.capture.open_with_options, capture)
        except UnauthenticatedError:
            await run_in_threadpool(limits.auth_failed, address)
            raise
        caller, subject_id, flow, actions, flash = opened
        link = caller.key_id[len(CAPTURE_PREFIX) :]
        return Opened(caller, subject_id, flow, link, actions or parse_actions(start), flash)
    found = await run_in_threadpool(svc.authenticate, key) if key else None
    if found is None:
        await run_in_threadpool(limits.auth_failed, address)
        raise UnauthenticatedError("a valid API key or capture token is required")
    if await run_in_threadpool(limits.for_key, found.key_id):
        raise _limited()
    purpose = start.get("purpose")
    if not found.roles & {str(purpose), "admin"}:
        raise ForbiddenError("this key cannot start a check for that purpose")
    subject = start.get("subject_id")
    return Opened(
        found,
        None if subject is None else str(subject),
        None if purpose is None else str(purpose),
        actions=parse_actions(start),
    )


def _limited() -> FacegateError:
    return RateLimitedError("too many requests", retry_after_s=60)


def parse_actions(start: dict[str, Any]) -> tuple[str, ...] | None:
    actions = start.get("actions")
    if actions is None:
        return None
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        raise InputError("actions must be a list of action names", code="invalid_actions")
    return tuple(actions)


@router.websocket("/v1/liveness/stream")
async def liveness_stream(ws: WebSocket) -> None:
    """A streamed, server-timed liveness check (docs/liveness-protocol.md)."""
    await ws.accept()
    svc: FaceService = ws.app.state.get_service()
    limits: RateLimits = ws.app.state.rate_limits
    address = client_address(ws.scope, limits.proxies)
    wait, _ = await run_in_threadpool(limits.before_auth, address)
    try:
        if wait:
            raise _limited()
        try:
            raw = await asyncio.wait_for(ws.receive_text(), START_TIMEOUT_S)
            start = json.loads(raw) if len(raw) <= MAX_CONTROL_BYTES else None
        except (TimeoutError, ValueError, KeyError) as exc:
            raise InputError("send a start message first", code="bad_start") from exc
        if not isinstance(start, dict) or start.get("type") != "start":
            raise InputError("send a start message first", code="bad_start")
        o = await authenticate(ws, svc, limits, start)
        run = await run_in_threadpool(
            svc.streams.open, o.caller, o.subject_id, o.purpose, o.actions, o.link, o.flash
        )
    except FacegateError as exc:
        await send_error(ws, exc)
        return
    except WebSocketDisconnect:
        return
    await session(ws, svc, run)


async def session(ws: WebSocket, svc: FaceService, run: StreamRun) -> None:
    """The receive loop: time frames, reveal steps, end on the client's word or a failure."""
    streams = svc.streams
    p = streams.policy
    clock = run.clock
    connected, finished = True, False
    try:
        await ws.send_json({"type": "ready", "fps": 15, "max_width": p.max_width,
                            "max_height": p.max_height, "max_frame_bytes": p.max_frame_bytes,
                            "steps": len(clock.steps)})  # fmt: skip
        await ws.send_json(clock.steps[clock.start(now_ms())].message(0))
        told_done, last_feedback = False, None
        while run.failure is None:
            try:
                msg = await asyncio.wait_for(ws.receive(), TICK_S)
            except TimeoutError:
                clock.tick(now_ms())
                continue
            if msg["type"] == "websocket.disconnect":
                connected = False
                clock.fail("stream_disconnected", "the connection closed before the end")
                break
            if msg.get("bytes") is not None:
                reveal = streams.frame(run, msg["bytes"], now_ms())
                if reveal is not None:
                    await ws.send_json(clock.steps[reveal].message(reveal))
                elif clock.done and not told_done:
                    told_done = True
                    await ws.send_json({"type": "steps_done"})
                if run.feedback != last_feedback:
                    last_feedback = run.feedback
                    await ws.send_json({"type": "feedback", "code": run.feedback})
                continue
            clock.heard(now_ms())
            text = msg.get("text") or ""
            kind = _message_type(text)
            if kind == "end":
                clock.end()
                break
            if kind == "cancel":
                clock.fail("cancelled", "the person cancelled")
                break
            clock.fail("bad_message", "an unknown message")
        result = await run_in_threadpool(streams.finish, run)
        finished = True
        if connected:
            await ws.send_json({"type": "verdict", **result})
            await ws.close(code=1000)
    except WebSocketDisconnect:
        if not finished:
            clock.fail("stream_disconnected", "the connection closed before the end")
            await run_in_threadpool(streams.finish, run)
    finally:
        await run_in_threadpool(streams.close, run)


def _message_type(text: str) -> str | None:
    if len(text) > MAX_CONTROL_BYTES:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return str(value.get("type")) if isinstance(value, dict) else None
