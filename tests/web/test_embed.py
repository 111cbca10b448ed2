"""The embeddable capture component (docs/embedding.md), in real Chromium with a fake camera.

Three origins on loopback: facegate behind a prefix-stripping proxy at
``http://127.0.0.1:<p>/facegate/`` (as nginx ``location /facegate/ { proxy_pass .../; }``
serves it, with FACEGATE_ROOT_PATH=/facegate), a relying party allowed to embed it at
``http://localhost:<q>``, and the same relying party's server reached as
``http://127.0.0.1:<q>``, another origin the tenant does not list. The allowed page runs a
whole enrolment inside the frame and hears the outcome by postMessage; the other one cannot
frame the page at all and hears nothing."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from tests.helpers import missing_resource
from tests.service.conftest import Server, _free_port, start_server, stop_server
from tests.web.conftest import CHROMIUM, Sockets, launch, screen, shot

from facegate.service.subjects import opened_details
from facegate.web.routers.capture import EMBED_JS

PREFIX = "/facegate"
FIXED = {"actions": ["open_mouth"], "flash": False}  # what the recorded camera can answer
SRI = "sha384-" + base64.b64encode(hashlib.sha384(EMBED_JS).digest()).decode()

RP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>relying party</title>
<script src="{facegate}{prefix}/capture/embed.js" integrity="{sri}" crossorigin="anonymous">
</script></head>
<body><h1>A relying party</h1><div id="box"></div>
<script>
window.messages = []; window.outcomes = []; window.first = null;
addEventListener("message", (e) => messages.push({{origin: e.origin, data: e.data}}));
const params = new URLSearchParams(location.search);
const box = document.getElementById("box");
if (params.get("mode") === "element") {{
  document.addEventListener("facegate-result", (e) => outcomes.push(e.detail));
  const el = document.createElement("facegate-capture");
  el.setAttribute("link", params.get("link"));
  box.appendChild(el);
}} else {{
  const h = FacegateCapture.open({{link: params.get("link"), container: box,
    onResult: (o) => outcomes.push(o)}});
  h.result.then((o) => {{ window.first = o; }});
}}
</script></body></html>"""


class StripPrefix:
    """The reverse proxy's job, in process: ``/facegate/x`` reaches the app as ``/x`` (HTTP and
    WebSocket alike); anything else is 404."""

    def __init__(self, app: Any, prefix: str) -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] not in ("http", "websocket") or not path.startswith(self.prefix + "/"):
            if scope["type"] == "http":
                await send({"type": "http.response.start", "status": 404, "headers": []})
                await send({"type": "http.response.body", "body": b"not under the prefix"})
            return
        inner = path[len(self.prefix) :]
        await self.app({**scope, "path": inner, "raw_path": inner.encode()}, receive, send)


@dataclass
class Embed:
    server: Server
    facegate: str  # the origin the browser sees, the prefix under it
    allowed: str  # the relying party, listed in the tenant's embed_origins
    other: str  # the same pages from an origin not listed
    pw: Any

    def link(self, subject: str, flow: str, **fixed: Any) -> tuple[str, str]:
        """(link id, the absolute capture link as the relying party's back end builds it)."""
        c = self.server.client()
        c.post("/v1/subjects", json={"subject_id": subject})
        r = c.post("/v1/capture-links", json={"subject_id": subject, "flow": flow, **fixed})
        assert r.status_code == 201, r.text
        assert r.json()["url"].startswith(PREFIX + "/?t=")  # FACEGATE_ROOT_PATH in the link
        return r.json()["id"], self.facegate.removesuffix(PREFIX) + r.json()["url"]

    def rp_page(self, origin: str, link: str, mode: str = "api") -> str:
        return f"{origin}/rp.html?mode={mode}&link={quote(link, safe='')}"


def serve_relying_party(facegate: str) -> tuple[ThreadingHTTPServer, int]:
    page = RP_PAGE.format(facegate=facegate, prefix=PREFIX, sri=SRI).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path.startswith("/rp.html")
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(page if ok else b"")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, httpd.server_address[1]


@pytest.fixture(scope="module")
def embed(engine, tmp_path_factory) -> Iterator[Embed]:
    if not Path(CHROMIUM).exists():
        missing_resource("Chromium is missing: run ./scripts/setup.sh --test (Debian's chromium)")
    from playwright.sync_api import sync_playwright

    server = start_server(engine, tmp_path_factory.mktemp("embed"), root_path=PREFIX)
    port = _free_port()
    proxy = uvicorn.Server(
        uvicorn.Config(
            StripPrefix(server.server.config.app, PREFIX),
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_level="warning",
        )
    )
    thread = threading.Thread(target=proxy.run, daemon=True)
    thread.start()
    while not proxy.started:
        thread.join(0.05)
    facegate = f"http://127.0.0.1:{port}"
    httpd, rp_port = serve_relying_party(facegate)
    allowed, other = f"http://localhost:{rp_port}", f"http://127.0.0.1:{rp_port}"
    r = server.client().patch("/v1/tenant", json={"embed_origins": [allowed]})
    assert r.status_code == 200, r.text
    with sync_playwright() as pw:
        yield Embed(server, facegate + PREFIX, allowed, other, pw)
    httpd.shutdown()
    proxy.should_exit = True
    thread.join(timeout=10)
    stop_server(server)


def test_the_setting_is_checked_admin_only_and_audited(embed: Embed) -> None:
    c = embed.server.client()
    for bad in (
        ["https://*.example"],
        ["https://app.example/path"],
        ["http://app.example"],  # plain http only on loopback
        ["https://user@app.example"],
        ["null"],
        ["*"],
        ["https://app.example?x=1"],
    ):
        r = c.patch("/v1/tenant", json={"embed_origins": bad})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["code"] in ("bad_embed_origin", "bad_request"), r.text
    assert c.get("/v1/tenant").json()["embed_origins"] == [embed.allowed]  # unchanged

    key = c.post("/v1/keys", json={"roles": ["verify"], "label": "no admin"}).json()["key"]
    r = embed.server.client(key).patch("/v1/tenant", json={"embed_origins": []})
    assert r.status_code == 403, r.text

    r = c.patch(
        "/v1/tenant",
        json={"embed_origins": [embed.allowed, "https://App.Example:443", "https://app.example"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["embed_origins"] == [embed.allowed, "https://app.example"]  # as browsers write
    svc = embed.server.service
    caller = svc.authenticate(embed.server.admin_key)
    assert caller is not None
    keys = svc.ctx.audit_detail_keys(svc.tenant(caller.tenant_id))
    updates = [
        opened_details(keys, rec)
        for rec in svc.store.audit_records(caller.tenant_id)
        if rec.action == "tenant.update"
    ]
    assert updates[-1]["embed_origins"] == {
        "from": [embed.allowed],
        "to": [embed.allowed, "https://app.example"],
    }
    assert c.patch("/v1/tenant", json={"embed_origins": [embed.allowed]}).status_code == 200


def csp(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    parts = (p.strip().split(" ", 1) for p in policy.split(";"))
    return {p[0]: p[1] if len(p) > 1 else "" for p in parts}


def test_headers_name_exactly_the_tenants_origins(embed: Embed) -> None:
    _, link = embed.link("embed-headers", "verify")
    with httpx.Client(timeout=30) as http:
        page = http.get(link + "&origin=" + quote(embed.allowed, safe=""))
        assert page.status_code == 200
        assert csp(page)["frame-ancestors"] == embed.allowed
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "camera=(self)" in page.headers["permissions-policy"]
        assert "x-frame-options" not in page.headers
        assert f'data-origin="{embed.allowed}"' in page.text  # the approved target
        # an origin the tenant does not list is never a target
        page = http.get(link + "&origin=" + quote(embed.other, safe=""))
        assert "data-origin" not in page.text
        assert csp(page)["frame-ancestors"] == embed.allowed
        # no link, a forged one, another tenant's: framed by no one
        _, key = embed.server.service.create_tenant("other")
        c = embed.server.client(key)
        c.post("/v1/subjects", json={"subject_id": "s"})
        theirs = c.post("/v1/capture-links", json={"subject_id": "s", "flow": "verify"}).json()
        for url in (
            embed.facegate + "/?",
            embed.facegate + "/?t=forged.token",
            embed.facegate + theirs["url"].removeprefix(PREFIX),
        ):
            page = http.get(url + "&origin=" + quote(embed.allowed, safe=""))
            assert csp(page)["frame-ancestors"] == "'none'", url
            assert page.headers["x-frame-options"] == "DENY"
            assert "data-origin" not in page.text
        script = http.get(embed.facegate + "/capture/embed.js")
        assert script.status_code == 200 and script.content == EMBED_JS
        assert script.headers["content-type"].startswith("text/javascript")
        assert script.headers["access-control-allow-origin"] == "*"  # integrity= needs CORS
        assert script.headers["x-content-type-options"] == "nosniff"
        # under the prefix the page's own files resolve, and nothing outside it is served
        assert http.get(embed.facegate + "/static/capture.js").status_code == 200
        assert http.get(embed.facegate.removesuffix(PREFIX) + "/v1/tenant").status_code == 404
    # a proxy that does not strip the prefix (or nothing in front): the same routes answer
    direct = embed.server.client()
    assert direct.get(PREFIX + "/v1/tenant").json()["embed_origins"] == [embed.allowed]
    assert direct.get(PREFIX + "/capture/embed.js").content == EMBED_JS
    assert direct.get("/openapi.json").json()["servers"] == [{"url": PREFIX}]


# Under CPU contention (this machine's two cores are shared) a page's timers can stall for more
# than the 700 ms the server allows between frames, framed or not: that verdict is the check
# doing its job, not the component failing, so such an attempt is retried once, on a new link.
STREAM_TIMING = {"stream_paused", "stream_jitter", "stream_late"}


def enrol_in_frame(embed: Embed, y4m: Path, subject: str) -> dict[str, Any]:
    """One enrolment inside the relying party's frame: what its page heard, and what the server
    says about the link."""
    link_id, link = embed.link(subject, "enroll", **FIXED)
    browser = launch(embed.pw, y4m)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    sockets = Sockets(page)  # the frame's WebSocket, seen from the page
    page.goto(embed.rp_page(embed.allowed, link))
    frame = page.wait_for_selector("iframe").content_frame()
    assert frame is not None and frame.url.startswith(embed.facegate + "/?t=")
    screen(frame, "consent")
    # a message from anywhere but that frame (here the page itself) is not an outcome
    page.evaluate(
        "postMessage({type: 'facegate:capture', version: 1, status: 'passed',"
        " link_id: 'x', reasons: []}, '*')"
    )
    frame.click("#btn-agree")
    screen(frame, "camera")
    frame.click("#btn-start")  # the camera inside a cross-origin frame (allow="camera")
    frame.wait_for_selector("#rec:not([hidden])", timeout=30_000)
    screen(frame, "result", timeout=120_000)
    shot(page, f"embed-1-result-in-frame-{subject}")
    page.wait_for_function("() => window.outcomes.length > 0", timeout=10_000)
    heard = {
        "outcomes": page.evaluate("window.outcomes"),
        "first": page.evaluate("window.first"),
        "messages": page.evaluate("window.messages"),
        "live": frame.get_attribute("#decision", "data-live"),
        "link_id": link_id,
        "server": embed.server.client().get(f"/v1/capture-links/{link_id}").json(),
    }
    verdict = sockets.last("verdict") or {}
    print(f"{subject}: heard {heard['outcomes']}, server says {heard['server']['status']}")
    print(f"stream {verdict.get('stream')}, timings {verdict.get('timings_ms')}")
    browser.close()
    return heard


def test_an_allowed_origin_runs_a_capture_in_the_frame_and_hears_the_outcome(
    embed: Embed, y4m: Path
) -> None:
    for attempt in (1, 2):
        heard = enrol_in_frame(embed, y4m, f"embed-ok-{attempt}")
        outcomes, status = heard["outcomes"], heard["server"]
        assert len(outcomes) == 1 and heard["first"] == outcomes[0]
        outcome = outcomes[0]
        assert outcome["link_id"] == heard["link_id"] and outcome["flow"] == "enroll"
        assert outcome["status"] == status["status"], (outcome, status)  # what the server holds
        if outcome["status"] != "failed" or not set(outcome["reasons"]) <= STREAM_TIMING:
            break
    assert outcome["status"] == "passed", (outcome, status)
    assert heard["live"] == "true"
    # what crossed: the documented fields and nothing of the face
    origin = embed.facegate.removesuffix(PREFIX)
    from_frame = [m for m in heard["messages"] if m["origin"] == origin]
    assert len(from_frame) == 1
    assert set(from_frame[0]["data"]) == {"type", "version", "link_id", "flow", "status", "reasons"}


def test_the_element_reports_a_decline(embed: Embed) -> None:
    link_id, link = embed.link("embed-decline", "enroll")
    browser = launch(embed.pw, None)
    page = browser.new_page()
    page.goto(embed.rp_page(embed.allowed, link, mode="element"))
    frame = page.wait_for_selector("facegate-capture iframe").content_frame()  # in its shadow
    assert frame is not None
    screen(frame, "consent")
    frame.click("#btn-decline")
    screen(frame, "declined")
    page.wait_for_function("() => window.outcomes.length > 0", timeout=10_000)
    (outcome,) = page.evaluate("window.outcomes")
    assert outcome == {"link_id": link_id, "flow": "enroll", "status": "declined", "reasons": []}
    assert embed.server.client().get(f"/v1/capture-links/{link_id}").json()["status"] == "declined"
    browser.close()


def test_an_origin_not_listed_cannot_frame_the_page(embed: Embed) -> None:
    link_id, link = embed.link("embed-other", "enroll")
    browser = launch(embed.pw, None)
    page = browser.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    headers: list[dict[str, str]] = []
    api: list[str] = []
    page.on("response", lambda r: headers.append(r.headers) if "/?t=" in r.url else None)
    page.on("request", lambda r: api.append(r.url) if "/v1/" in r.url else None)
    page.goto(embed.rp_page(embed.other, link))
    page.wait_for_function("() => document.querySelector('iframe') !== null")
    page.wait_for_timeout(2500)
    shot(page, "embed-2-refused")
    assert headers and all(
        f"frame-ancestors {embed.allowed};" in h["content-security-policy"] for h in headers
    )
    assert any("frame-ancestors" in line for line in console), console  # the browser refused
    framed = [f for f in page.frames if f.url.startswith(embed.facegate)]
    for f in framed:  # whatever stands in the frame is not the capture page
        assert f.evaluate("document.getElementById('app')") is None
    assert not api, api  # the page never ran: no call to the capture API
    assert page.evaluate("window.messages") == [] and page.evaluate("window.outcomes") == []
    assert embed.server.client().get(f"/v1/capture-links/{link_id}").json()["status"] == "pending"
    browser.close()


def test_root_path_setting_is_checked() -> None:
    from facegate.errors import ConfigError
    from facegate.settings import Settings

    env = {"FACEGATE_DATA_DIR": "/tmp/fg-unused", "FACEGATE_KEY_FILE": "/tmp/fg-unused/k"}
    assert Settings.from_env(env).root_path == ""
    assert Settings.from_env({**env, "FACEGATE_ROOT_PATH": "/facegate/"}).root_path == "/facegate"
    assert Settings.from_env({**env, "FACEGATE_ROOT_PATH": "/a/b-c"}).root_path == "/a/b-c"
    for bad in ("facegate", "/a b", "/a?x", "//host", "/a/../b", "/./a", "/a%2e"):
        with pytest.raises(ConfigError):
            Settings.from_env({**env, "FACEGATE_ROOT_PATH": bad})
