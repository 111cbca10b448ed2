"""Signed webhooks, against a real receiver on loopback, on SQLite and PostgreSQL: a capture
link's outcome is delivered once and signed as docs/webhooks.md tells a receiver to check;
failures are retried with growing gaps, then given up and redelivered on request; concurrent
delivery loops never make the same attempt twice; private targets are refused by default; the
secret reaches neither the database nor a log."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.service.conftest import (
    EVALUATION_TENANT,
    Server,
    consenting_subject,
    start_server,
    stop_server,
)

from facegate.errors import InputError
from facegate.service import webhook_delivery, webhooks
from facegate.service.context import Caller
from facegate.service.webhook_delivery import seal_config
from facegate.service.webhook_targets import check_url
from facegate.service.webhooks import Webhooks, emit

BACKOFF_S = 0.3
TOLERANCE_S = 300  # the replay window docs/webhooks.md asks receivers to enforce


# -- a receiver, and the check docs/webhooks.md gives ---------------------------------------


class Receiver:
    """A threaded HTTP server on 127.0.0.1 that records every POST and answers the statuses of
    ``script`` in turn, then 200."""

    def __init__(self, script: list[int] | None = None, delay_s: float = 0.0) -> None:
        self.script = list(script or [])
        self.delay_s = delay_s
        self.hits: list[tuple[float, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        self.active = 0  # requests being answered now, and the most at once
        self.peak = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.hits.append((time.monotonic(), dict(self.headers), body))
                    status = receiver.script.pop(0) if receiver.script else 200
                    receiver.active += 1
                    receiver.peak = max(receiver.peak, receiver.active)
                time.sleep(receiver.delay_s)
                with receiver.lock:
                    receiver.active -= 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # many loops post at once: no refused connections

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def wait(
        self, count: int, timeout_s: float = 15.0
    ) -> list[tuple[float, dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.hits) >= count:
                    return list(self.hits)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.hits)} deliveries arrived, {count} expected")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def verify_webhook(secret: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """Exactly the receiver's check of docs/webhooks.md."""
    h = {k.lower(): v for k, v in headers.items()}
    timestamp = h["facegate-timestamp"]
    if abs(time.time() - int(timestamp)) > TOLERANCE_S:
        raise ValueError("timestamp outside the replay window")
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    given = [p[3:] for p in h["facegate-signature"].split() if p.startswith("v1=")]
    if not any(hmac.compare_digest(expected, g) for g in given):
        raise ValueError("bad signature")
    event: dict[str, Any] = json.loads(body)
    if event["id"] != h["facegate-event-id"]:
        raise ValueError("event id mismatch")
    return event


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hooked(request, engine, tmp_path_factory) -> Iterator[Server]:
    """A server whose operator allows loopback webhooks, with short back-off for the tests."""
    url = request.getfixturevalue("postgres_server") if request.param == "postgres" else None
    s = start_server(
        engine,
        tmp_path_factory.mktemp("webhooks"),
        postgres_url=url,
        liveness=False,
        webhook_allow_private=True,
        webhook_backoff_s=BACKOFF_S,
        webhook_poll_s=0.1,
        webhook_timeout_s=3.0,
        webhook_max_attempts=3,
    )
    yield s
    stop_server(s)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def new_tenant(server: Server, name: str) -> httpx.Client:
    _, key = server.service.create_tenant(name, EVALUATION_TENANT)
    return server.client(key)


def capture_link(c: httpx.Client, subject_id: str, flow: str = "verify") -> dict[str, Any]:
    consenting_subject(c, subject_id)
    r = c.post("/v1/capture-links", json={"subject_id": subject_id, "flow": flow})
    assert r.status_code == 201, r.text
    link: dict[str, Any] = r.json()
    return link


def decline(server: Server, link: dict[str, Any]) -> None:
    r = httpx.post(
        f"{server.url}/v1/capture/decline", headers={"X-Capture-Token": link["capture_token"]}
    )
    assert r.status_code == 200, r.text


def deliveries(c: httpx.Client) -> list[dict[str, Any]]:
    r = c.get("/v1/tenant/webhook-deliveries")
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["deliveries"]
    return out


def settle(c: httpx.Client, timeout_s: float = 15.0) -> list[dict[str, Any]]:
    """The delivery log once nothing in it is pending."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = deliveries(c)
        if log and all(d["status"] != "pending" for d in log):
            return log
        time.sleep(0.1)
    raise AssertionError(f"deliveries still pending: {deliveries(c)}")


# -- tests ----------------------------------------------------------------------------------


def test_capture_outcome_is_delivered_once_and_signed(hooked: Server, receiver: Receiver) -> None:
    c = new_tenant(hooked, "hook-once")
    r = c.put("/v1/tenant/webhook", json={"url": receiver.url()})
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    assert secret.startswith("whsec_")
    assert "secret" not in c.get("/v1/tenant/webhook").json()
    again = c.put("/v1/tenant/webhook", json={"url": receiver.url("/hook2")})
    assert again.status_code == 200 and "secret" not in again.json()  # kept, not shown again

    link = capture_link(c, "declines")
    decline(hooked, link)
    _, headers, body = receiver.wait(1)[0]
    event = verify_webhook(secret, headers, body)
    assert event["type"] == "capture.declined"
    status = c.get(f"/v1/capture-links/{link['id']}").json()
    data = event["data"]
    assert data["capture_id"] == link["id"] and data["status"] == status["status"] == "declined"
    assert data["subject_id"] == "declines" and data["flow"] == "verify"
    assert data["result"] == status["result"]
    assert not {"score", "embedding", "image"} & set(json.dumps(event).split('"'))
    with pytest.raises(ValueError):
        verify_webhook(secret, headers, body.replace(b"declined", b"passed__"))
    with pytest.raises(ValueError):
        verify_webhook("whsec_other", headers, body)

    # a failed capture (the service's finish, as a streamed check that was not live ends)
    link2 = capture_link(c, "not-live")
    caller = Caller(c_tenant(hooked, c), f"capture:{link2['id']}", frozenset({"verify"}))
    hooked.service.capture.finish(caller, "not-live", "verify", None, False, [{"code": "x_y"}])
    hits = receiver.wait(2)
    failed = verify_webhook(secret, hits[1][1], hits[1][2])
    assert failed["type"] == "capture.failed" and failed["data"]["result"]["reasons"] == ["x_y"]
    assert failed["data"]["result"]["live"] is False

    time.sleep(1.0)  # nothing is sent twice
    assert len(receiver.hits) == 2
    assert len({h[1]["Facegate-Event-Id"] for h in receiver.hits}) == 2
    log = settle(c)
    assert [d["status"] for d in log] == ["delivered", "delivered"]
    assert all(d["attempts"] == 1 and d["last_status_code"] == 200 for d in log)
    assert receiver.hits[0][1]["Host"] == receiver.url().split("/")[2]  # the name, not just an IP


def c_tenant(server: Server, c: httpx.Client) -> str:
    caller = server.service.authenticate(c.headers["Authorization"].removeprefix("Bearer "))
    assert caller is not None
    return caller.tenant_id


def test_failures_are_retried_with_growing_gaps_then_given_up(hooked: Server) -> None:
    flaky = Receiver([500, 500])
    try:
        c = new_tenant(hooked, "hook-retry")
        secret = c.put("/v1/tenant/webhook", json={"url": flaky.url()}).json()["secret"]
        decline(hooked, capture_link(c, "retried"))
        hits = flaky.wait(3)
        time.sleep(0.5)
        assert len(flaky.hits) == 3
        assert len({h[1]["Facegate-Event-Id"] for h in hits}) == 1  # one event, three attempts
        for _, headers, body in hits:
            verify_webhook(secret, headers, body)  # each attempt signed with a fresh timestamp
        gap1, gap2 = hits[1][0] - hits[0][0], hits[2][0] - hits[1][0]
        assert gap1 >= BACKOFF_S * 0.8 - 0.05, (gap1, gap2)
        assert gap2 > 2 * gap1, (gap1, gap2)  # x4 back-off, at most a fifth off by jitter
        [d] = settle(c)
        assert d["status"] == "delivered" and d["attempts"] == 3 and d["last_status_code"] == 200
    finally:
        flaky.close()

    down = Receiver([503, 503, 503])  # max_attempts is 3 here: then failed
    try:
        c = new_tenant(hooked, "hook-down")
        c.put("/v1/tenant/webhook", json={"url": down.url()})
        decline(hooked, capture_link(c, "given-up"))
        down.wait(3)
        [d] = settle(c)
        assert d["status"] == "failed" and d["attempts"] == 3
        assert d["last_status_code"] == 503 and d["last_error"] == "http_status"
        assert d["next_attempt_at"] is None
        r = c.post(f"/v1/tenant/webhook-deliveries/{d['event_id']}/redeliver")
        assert r.status_code == 200 and r.json()["status"] == "pending", r.text
        hits = down.wait(4)
        assert hits[3][1]["Facegate-Event-Id"] == d["event_id"]  # the same event id
        [d] = settle(c)
        assert d["status"] == "delivered" and d["attempts"] == 1
        unknown = c.post("/v1/tenant/webhook-deliveries/evt_000000000000000000000000/redeliver")
        assert unknown.status_code == 404
    finally:
        down.close()


def test_concurrent_delivery_loops_never_repeat_an_attempt(hooked: Server) -> None:
    """Four extra delivery loops (each its own database connection, as other workers would
    have) race the server's own loop over 40 events: each event arrives exactly once."""
    slow = Receiver(delay_s=0.03)  # a slower receiver widens any window between claims
    original = hooked.service.webhooks.policy
    try:
        c = new_tenant(hooked, "hook-race")
        c.put("/v1/tenant/webhook", json={"url": slow.url()})
        tenant_id = c_tenant(hooked, c)
        ctx = hooked.service.ctx
        with ctx.store.tx():  # queued together, so that every loop sees them due at once
            ids = [
                emit(ctx, tenant_id, "capture.passed", {"capture_id": f"race-{i}"})
                for i in range(40)
            ]
        assert all(ids)
        # a generous timeout: on a loaded machine a 3 s one could expire after the receiver got
        # the request, and its retry (a correct at-least-once redelivery) would look like a race
        patient = replace(hooked.service.webhooks.policy, timeout_s=60.0)
        loops = [Webhooks(ctx) for _ in range(4)]
        for w in [*loops, hooked.service.webhooks]:
            w.policy = patient
        start = threading.Barrier(len(loops))

        def run(w: Webhooks) -> None:
            start.wait()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(slow.hits) < 40:
                if not w.deliver_due():
                    time.sleep(0.005)
            w.close()  # the attempts in flight record their results

        threads = [threading.Thread(target=run, args=(w,)) for w in loops]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        slow.wait(40)
        time.sleep(0.5)
        received = [h[1]["Facegate-Event-Id"] for h in slow.hits]
        assert sorted(received) == sorted(ids), "an event was delivered twice or not at all"
        log = settle(c)
        assert len(log) == 40 and all(d["attempts"] == 1 for d in log)
    finally:
        hooked.service.webhooks.policy = original
        slow.close()


def test_expired_links_are_announced_once(hooked: Server, receiver: Receiver) -> None:
    c = new_tenant(hooked, "hook-expiry")
    secret = c.put(
        "/v1/tenant/webhook", json={"url": receiver.url(), "events": ["capture.expired"]}
    ).json()["secret"]
    decline(hooked, capture_link(c, "declined-not-wanted"))  # not among its events
    r = c.post("/v1/capture-links", json={"subject_id": "declined-not-wanted", "flow": "verify"})
    link = r.json()
    later = time.time() + 3600
    assert hooked.service.webhooks.sweep_expired(now=later) == 1
    assert hooked.service.webhooks.sweep_expired(now=later) == 0  # announced once
    _, headers, body = receiver.wait(1)[0]
    event = verify_webhook(secret, headers, body)
    assert event["type"] == "capture.expired" and event["data"]["capture_id"] == link["id"]
    time.sleep(0.5)
    assert len(receiver.hits) == 1


def test_rotation_renewal_and_removal(hooked: Server, receiver: Receiver) -> None:
    c = new_tenant(hooked, "hook-rotate")
    old = c.put("/v1/tenant/webhook", json={"url": receiver.url()}).json()["secret"]
    r = c.post("/v1/tenant/webhook/rotate-secret")
    assert r.status_code == 200, r.text
    new = r.json()["secret"]
    assert new != old
    # a data-key renewal re-seals the endpoint: it still opens, the secret is the same
    hooked.service.renew_transform(c_tenant(hooked, c))
    assert c.get("/v1/tenant/webhook").json()["url"] == receiver.url()
    decline(hooked, capture_link(c, "rotated"))
    _, headers, body = receiver.wait(1)[0]
    assert len(headers["Facegate-Signature"].split()) == 2  # the previous one still signs
    verify_webhook(new, headers, body)
    verify_webhook(old, headers, body)
    assert c.delete("/v1/tenant/webhook").json() == {"deleted": True}
    assert c.get("/v1/tenant/webhook").status_code == 404
    assert c.delete("/v1/tenant/webhook").status_code == 404
    actions = [a["action"] for a in c_audit(hooked, c) if a["action"].startswith("webhook.")]
    assert actions == ["webhook.configure", "webhook.rotate_secret", "webhook.delete"]


def c_audit(server: Server, c: httpx.Client) -> list[dict[str, Any]]:
    return [r.as_dict() for r in server.service.store.audit_records(c_tenant(server, c))]


def test_only_admins_configure_webhooks(hooked: Server) -> None:
    c = new_tenant(hooked, "hook-roles")
    key = c.post("/v1/keys", json={"roles": ["verify"]}).json()["key"]
    v = hooked.client(key)
    assert v.put("/v1/tenant/webhook", json={"url": "https://a.example/"}).status_code == 403
    assert v.get("/v1/tenant/webhook-deliveries").status_code == 403
    bad = c.put("/v1/tenant/webhook", json={"url": "https://x.example/", "events": ["nope"]})
    assert bad.status_code == 400


def test_secret_and_url_reach_neither_database_nor_logs(
    hooked: Server, caplog: pytest.LogCaptureFixture
) -> None:
    failing = Receiver([500])
    caplog.set_level(logging.DEBUG)
    try:
        c = new_tenant(hooked, "hook-privacy")
        url = failing.url("/hook?token=url-token-7f3e9a")
        secret = c.put("/v1/tenant/webhook", json={"url": url}).json()["secret"]
        rotated = c.post("/v1/tenant/webhook/rotate-secret").json()["secret"]
        decline(hooked, capture_link(c, "private-bits"))
        failing.wait(2)  # one failure (logged), then delivered
        settle(c)
    finally:
        failing.close()
    needles = [secret, rotated, "url-token-7f3e9a"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "webhook delivery" in logged  # the failure was logged, by ids and codes
    for n in needles:
        assert n not in logged
    for record in c_audit(hooked, c):
        assert not any(n in json.dumps(record) for n in needles)
    if hooked.service.store.__class__.__name__ == "SQLiteStore":
        blobs = b"".join(p.read_bytes() for p in Path(hooked.data_dir).rglob("*") if p.is_file())
    else:
        db = hooked.service.store._db()  # type: ignore[attr-defined]
        rows = db.execute("SELECT * FROM webhooks").fetchall()
        rows += db.execute("SELECT * FROM webhook_deliveries").fetchall()
        rows += db.execute("SELECT details FROM audit").fetchall()
        blobs = repr(rows).encode()
    assert blobs
    for n in needles:
        assert n.encode() not in blobs


def test_private_targets_are_refused_by_default(engine, tmp_path: Path) -> None:
    server = start_server(engine, tmp_path, liveness=False)
    try:
        c = server.client()
        for url, code in [
            ("http://127.0.0.1:9/hook", "webhook_url_not_allowed"),  # http
            ("https://127.0.0.1/hook", "webhook_url_not_allowed"),
            ("https://localhost/hook", "webhook_url_not_allowed"),
            ("https://10.1.2.3/hook", "webhook_url_not_allowed"),
            ("https://169.254.169.254/latest", "webhook_url_not_allowed"),
            ("https://[::1]/hook", "webhook_url_not_allowed"),
            ("https://[::ffff:127.0.0.1]/hook", "webhook_url_not_allowed"),
            ("https://user:pw@rp.example/hook", "webhook_url_invalid"),
            ("ftp://rp.example/hook", "webhook_url_invalid"),
            ("https://does-not-resolve.invalid/hook", "webhook_url_not_allowed"),
            ("https://1.1.1.1/a\x7fb", "webhook_url_invalid"),
            ("https://1.1.1.1/a b", "webhook_url_invalid"),
            ("https://[64:ff9b::a9fe:a9fe]/hook", "webhook_url_not_allowed"),
        ]:
            r = c.put("/v1/tenant/webhook", json={"url": url})
            assert r.status_code == 400 and r.json()["code"] == code, (url, r.text)
        # a name that does not resolve and one that resolves inside answer alike: no probing
        answers = [
            c.put("/v1/tenant/webhook", json={"url": u}).json()
            for u in ("https://does-not-resolve.invalid/", "https://localhost/")
        ]
        assert {a["code"] for a in answers} == {"webhook_url_not_allowed"}
        assert answers[0].get("detail") == answers[1].get("detail")
        assert c.get("/v1/tenant/webhook").status_code == 404
    finally:
        stop_server(server)


def test_url_check_with_a_resolver() -> None:
    public = {"rp.example": ["93.184.215.14"], "rebind.example": ["93.184.215.14", "10.0.0.7"]}

    def resolver(host: str, port: int) -> list[str]:
        return public.get(host, [])

    t = check_url("https://rp.example:8443/h?x=1", allow_private=False, resolver=resolver)
    assert (t.address, t.port, t.path, t.host_header()) == (
        "93.184.215.14",
        8443,
        "/h?x=1",
        "rp.example:8443",
    )
    # connects to what was checked
    assert (t.address, t.port, t.path) == ("93.184.215.14", 8443, "/h?x=1")
    with pytest.raises(InputError) as e:
        check_url("https://rebind.example/", allow_private=False, resolver=resolver)
    assert e.value.code == "webhook_url_not_allowed"  # one inside address is enough
    with pytest.raises(InputError):
        check_url("https://100.64.0.1/", allow_private=False, resolver=lambda h, p: [h])
    assert check_url("http://10.0.0.7/", allow_private=True, resolver=lambda h, p: [h])


class Tarpit:
    """A receiver that answers its status line, then trickles one header byte every 0.1 s for
    as long as the connection lasts: a per-read timeout never fires on it."""

    def __init__(self) -> None:
        self.opened: list[float] = []
        self.closed: list[float] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.opened.append(time.monotonic())
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(600):
                    time.sleep(0.1)
                    conn.sendall(b"a")
            except OSError:
                pass
            self.closed.append(time.monotonic())

    def close(self) -> None:
        self.sock.close()


def test_a_stalling_receiver_holds_up_no_one(hooked: Server, receiver: Receiver) -> None:
    """Tenant A's receiver trickles its answer for ever; B's event is delivered at once, while
    A's attempt is cut at its deadline (3 s here) and recorded as a failed attempt."""
    tarpit = Tarpit()
    try:
        a, b = new_tenant(hooked, "hook-tarpit"), new_tenant(hooked, "hook-bystander")
        assert a.put("/v1/tenant/webhook", json={"url": tarpit.url()}).status_code == 200
        assert b.put("/v1/tenant/webhook", json={"url": receiver.url()}).status_code == 200
        decline(hooked, capture_link(a, "stalled"))
        deadline = time.monotonic() + 10
        while not tarpit.opened and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tarpit.opened, "A's attempt never started"
        decline(hooked, capture_link(b, "bystander"))
        receiver.wait(1, timeout_s=2.0)  # well before A's 3 s deadline
        assert time.monotonic() - tarpit.opened[0] < 3.0
        [d] = settle_attempt(a)
        assert d["status"] == "pending" and d["attempts"] == 1, d
        assert d["last_error"] == "timeout" and d["last_status_code"] is None
        deadline = time.monotonic() + 2  # the tarpit notices at its next byte or two
        while not tarpit.closed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tarpit.closed, "the stalled connection was not closed"
        assert tarpit.closed[0] - tarpit.opened[0] < 3.0 + 1.5  # cut at the deadline
        assert len(tarpit.opened) <= 2  # one attempt, maybe its retry: no pile of re-sends
    finally:
        tarpit.close()


def settle_attempt(c: httpx.Client, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """The delivery log once its first attempt has a recorded result."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = deliveries(c)
        if log and all(d["last_error"] or d["status"] != "pending" for d in log):
            return log
        time.sleep(0.05)
    raise AssertionError(f"no attempt recorded: {deliveries(c)}")


def test_a_row_that_cannot_be_sent_breaks_no_other(
    hooked: Server, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """A URL httpx cannot parse is refused when set; one that got into the store anyway (or a
    send that raises) fails its own attempt, and the other rows of the pass are delivered."""
    a, b = new_tenant(hooked, "hook-poison"), new_tenant(hooked, "hook-neighbour")
    bad = receiver.url("/a\x7fb")
    r = a.put("/v1/tenant/webhook", json={"url": bad})
    assert r.status_code == 400 and r.json()["code"] == "webhook_url_invalid", r.text
    assert a.put("/v1/tenant/webhook", json={"url": receiver.url("/a")}).status_code == 200
    assert b.put("/v1/tenant/webhook", json={"url": receiver.url("/b")}).status_code == 200
    ctx, tenant_a = hooked.service.ctx, c_tenant(hooked, a)
    row = ctx.store.get_webhook(tenant_a)
    assert row is not None
    keys = ctx.secrets_of(ctx.tenant(tenant_a))
    config = webhook_delivery.open_config(keys, row)
    with ctx.store.tx():  # as an older version's check would have let it in
        ctx.store.put_webhook(replace(row, sealed_config=seal_config(keys, {**config, "url": bad})))
    caplog.set_level(logging.WARNING)
    decline(hooked, capture_link(a, "poisoned"))
    decline(hooked, capture_link(b, "neighbour"))
    receiver.wait(1)
    [d] = settle_attempt(a)
    assert d["last_error"] == "webhook_url_invalid" and d["status"] == "pending"
    assert deliveries(b)[0]["status"] in ("pending", "delivered")
    settle(b)

    real_post = webhook_delivery.post

    def exploding(target: Any, body: bytes, headers: dict[str, str], timeout_s: float) -> Any:
        if target.path == "/a":
            raise RuntimeError("boom http://secret-host/")
        return real_post(target, body, headers, timeout_s)

    monkeypatch.setattr(webhook_delivery, "post", exploding)
    with ctx.store.tx():
        ctx.store.put_webhook(row)  # the good URL again, whose send now raises
    decline(hooked, capture_link(b, "neighbour-2"))
    decline(hooked, capture_link(a, "exploding"))
    receiver.wait(2)
    log_a = settle_attempt(a)
    assert "internal_error" in {d["last_error"] for d in log_a}
    assert all(d["status"] == "delivered" for d in settle(b))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "RuntimeError" in logged and "secret-host" not in logged and "\x7f" not in logged


def test_a_second_rotation_ends_the_first_grace(hooked: Server, receiver: Receiver) -> None:
    """At most one previous secret signs: rotating twice within the day drops the original."""
    c = new_tenant(hooked, "hook-rotate-twice")
    s0 = c.put("/v1/tenant/webhook", json={"url": receiver.url()}).json()["secret"]
    s1 = c.post("/v1/tenant/webhook/rotate-secret").json()["secret"]
    s2 = c.post("/v1/tenant/webhook/rotate-secret").json()["secret"]
    decline(hooked, capture_link(c, "rotated-twice"))
    _, headers, body = receiver.wait(1)[0]
    assert len(headers["Facegate-Signature"].split()) == 2
    verify_webhook(s2, headers, body)
    verify_webhook(s1, headers, body)
    with pytest.raises(ValueError):
        verify_webhook(s0, headers, body)
    rotations = [a for a in c_audit(hooked, c) if a["action"] == "webhook.rotate_secret"]
    assert len(rotations) == 2


def test_a_flooding_tenant_holds_up_no_other(hooked: Server, receiver: Receiver) -> None:
    """Tenant A has 64 events due to a receiver that answers 200 only after 0.6 s (a slow but
    successful receiver, as one that answers just before the deadline); B's one event goes out
    at once, not after A's backlog (64 x 0.6 s / 8 senders, ~5 s, before the fairness), and A
    never has more than the per-tenant cap of the worker's senders."""
    slow = Receiver(delay_s=0.6)
    try:
        a, b = new_tenant(hooked, "hook-flood"), new_tenant(hooked, "hook-victim")
        assert a.put("/v1/tenant/webhook", json={"url": slow.url()}).status_code == 200
        assert b.put("/v1/tenant/webhook", json={"url": receiver.url()}).status_code == 200
        link = capture_link(b, "victim")
        ctx, tenant_a = hooked.service.ctx, c_tenant(hooked, a)
        with ctx.store.tx():
            for i in range(64):
                assert emit(ctx, tenant_a, "capture.passed", {"capture_id": f"flood-{i}"})
        slow.wait(2)  # the flood is being sent
        started = time.monotonic()
        decline(hooked, link)
        [(arrived, _, _)] = receiver.wait(1, timeout_s=15.0)
        waited = arrived - started
        assert waited < 2.0, f"the victim's event waited {waited:.1f} s behind the flood"
        cap = hooked.service.webhooks.policy.tenant_cap
        assert cap == 2 and slow.peak <= cap, slow.peak
        assert len(slow.hits) < 64  # the flood was still being sent
        assert a.delete("/v1/tenant/webhook").status_code == 200  # the rest fail at once
        settle(a, timeout_s=30.0)
    finally:
        slow.close()


def test_redelivery_is_bounded(
    hooked: Server, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivered event is redelivered at most once per ``REDELIVER_GAP_S`` (429 with
    ``Retry-After``), and none while the tenant has ``REDELIVER_MAX_PENDING`` events pending,
    however many calls race for the last places (one lock per tenant, on both backends)."""
    c = new_tenant(hooked, "hook-redeliver")
    assert c.put("/v1/tenant/webhook", json={"url": receiver.url()}).status_code == 200
    ctx, tenant_id = hooked.service.ctx, c_tenant(hooked, c)
    with ctx.store.tx():
        ids = [emit(ctx, tenant_id, "capture.passed", {"capture_id": f"r-{i}"}) for i in range(6)]
    receiver.wait(6)
    settle(c)
    path = "/v1/tenant/webhook-deliveries/{}/redeliver"
    r = c.post(path.format(ids[0]))
    assert r.status_code == 429 and r.json()["code"] == "webhook_redeliver_too_soon", r.text
    assert 500 <= int(r.headers["Retry-After"]) <= webhooks.REDELIVER_GAP_S
    time.sleep(0.3)
    assert len(receiver.hits) == 6  # nothing was queued

    monkeypatch.setattr(webhooks, "REDELIVER_GAP_S", 0.0)
    monkeypatch.setattr(webhooks, "REDELIVER_MAX_PENDING", 3)
    receiver.delay_s = 2.0  # the redelivered events stay pending (in flight or due) a while
    start = threading.Barrier(6)
    codes: list[tuple[int, str]] = []

    def redeliver(event_id: str) -> None:
        client = hooked.client(c.headers["Authorization"].removeprefix("Bearer "))
        start.wait()
        answer = client.post(path.format(event_id))
        codes.append((answer.status_code, answer.json().get("code", "")))

    threads = [threading.Thread(target=redeliver, args=(e,)) for e in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [code for code, _ in codes if code == 200]
    refused = [name for code, name in codes if code != 200]
    assert 1 <= len(ok) <= 3, codes
    assert set(refused) <= {"webhook_redeliver_backlog"}, codes
    receiver.delay_s = 0.0
    settle(c)
    assert all(d["status"] == "delivered" for d in deliveries(c))


def test_close_is_final(hooked: Server) -> None:
    """A pass that runs after ``close`` (the loop's thread, abandoned when its task was
    cancelled) claims nothing and starts no sender pool."""
    w = Webhooks(hooked.service.ctx)
    w.close()
    assert w.deliver_due() == 0 and w._pool is None
    w.close()  # twice is fine
