"""``Idempotency-Key`` on every POST of the API: a retry with the same key and the same body gets
the first answer again and has no second effect (one enrolment, not three); the same key with
another body answers 409 ``idempotency_key_reused``; a retry while the first is still running
answers 409 ``idempotency_in_progress`` with ``Retry-After``.

Keys are per tenant and hashed; the kept answer (which may name subjects) is sealed under a key
derived from the tenant's data key, and kept for a day. Answers of 5xx are not kept, so a retry
after a server fault runs again. Requests without the header, and the capture page's routes,
pass untouched.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from anyio import to_thread
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facegate.errors import ProtectionError
from facegate.protection.crypto import open_sealed, seal
from facegate.service import Caller, FaceService
from facegate.web.middleware import CALLER_STATE, CAPTURE_PREFIX
from facegate.web.problems import problem

MAX_KEY_LENGTH = 200


class Idempotency:
    """ASGI middleware, inside ``AuthGate`` (which found the caller from the headers)."""

    def __init__(self, app: ASGIApp, service: Callable[[], FaceService], limit: int) -> None:
        self.app, self.service, self.limit = app, service, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = Headers(scope=scope).get("idempotency-key")
        found = scope.get("state", {}).get(CALLER_STATE)
        if (
            scope["method"] != "POST"
            or key is None
            or str(scope["path"]).startswith(CAPTURE_PREFIX)
            or found is None
            or not isinstance(found[1], Caller)
        ):
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY_LENGTH:
            answer = problem(400, "bad_request", "Idempotency-Key must be 1 to 200 characters")
            await answer(scope, receive, send)
            return
        caller: Caller = found[1]
        body, more = await read_capped(receive, self.limit)
        if more:  # over the body limit: BodyLimit refuses it; nothing is kept
            await self.app(scope, replay(body, receive), send)
            return
        key_hash = hashlib.sha256(f"{caller.tenant_id}|{key}".encode()).hexdigest()
        request_hash = hashlib.sha256(
            scope["method"].encode() + b" " + str(scope["path"]).encode() + b"\n" + body
        ).hexdigest()
        svc = self.service()
        claim = await to_thread.run_sync(
            svc.store.claim_idempotency_key, caller.tenant_id, key_hash, request_hash, time.time()
        )
        if claim.state == "mismatch":
            answer = problem(
                409,
                "idempotency_key_reused",
                "this Idempotency-Key was used with another request",
            )
            await answer(scope, receive, send)
            return
        if claim.state == "pending":
            answer = problem(
                409,
                "idempotency_in_progress",
                "the first request with this Idempotency-Key is still running",
                retry_after_s=1,
            )
            await answer(scope, receive, send)
            return
        sealer = await to_thread.run_sync(_sealer, svc, caller.tenant_id)
        if claim.state == "done":
            try:
                kept = json.loads(open_sealed(sealer, claim.sealed_answer, _aad(key_hash)))
            except ProtectionError:  # kept under a data key a renewal has replaced
                answer = problem(
                    409,
                    "idempotency_key_reused",
                    "the answer kept for this Idempotency-Key predates a key renewal: use a new"
                    " key",
                )
                await answer(scope, receive, send)
                return
            await _send_json(send, claim.status, kept["body"], kept["type"], replayed=True)
            return
        # The answer is kept before it is sent: a client that retries the moment it has the
        # first answer must find it kept, not "in progress".
        status, media_type, chunks = 500, "application/json", bytearray()
        held: list[Message] = []

        async def hold(message: Message) -> None:
            nonlocal status, media_type
            if message["type"] == "http.response.start":
                status = int(message["status"])
                media_type = Headers(raw=message["headers"]).get("content-type", media_type)
            elif message["type"] == "http.response.body":
                chunks.extend(message.get("body", b""))
            held.append(message)

        try:
            await self.app(scope, replay(body, receive), hold)
        except BaseException:
            await to_thread.run_sync(svc.store.release_idempotency_key, caller.tenant_id, key_hash)
            raise
        if status >= 500:
            await to_thread.run_sync(svc.store.release_idempotency_key, caller.tenant_id, key_hash)
        else:
            kept = json.dumps({"body": chunks.decode(), "type": media_type}).encode()
            sealed = seal(sealer, kept, _aad(key_hash))
            await to_thread.run_sync(
                svc.store.finish_idempotency_key, caller.tenant_id, key_hash, status, sealed
            )
        for message in held:
            await send(message)


def _aad(key_hash: str) -> bytes:
    return f"idempotency|{key_hash}".encode()


def _sealer(svc: FaceService, tenant_id: str) -> bytes:
    return svc.secrets_of(svc.tenant(tenant_id)).derived_key("idempotency")


async def read_capped(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The body, up to ``limit`` + 1 bytes; True when more was sent than the limit."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body.extend(message.get("body", b""))
        if len(body) > limit:
            return bytes(body), True
        if not message.get("more_body", False):
            break
    return bytes(body), False


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read body to the app, then the original channel."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _send_json(send: Send, status: int, body: str, media_type: str, replayed: bool) -> None:
    headers: list[Any] = [
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(body.encode())).encode()),
    ]
    if replayed:
        headers.append((b"idempotency-replayed", b"true"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})
