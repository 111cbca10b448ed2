"""The TLS walk-through of docs/operations.md, run for real: Debian's nginx with
deploy/nginx/facegate.conf (the block the doc shows, byte for byte), a self-signed certificate
made with the doc's own openssl command, and facegate behind it with
FACEGATE_TRUSTED_PROXIES=127.0.0.1.

nginx runs unprivileged on loopback high ports with a temporary prefix; the only changes to the
shipped file are the listen ports, the certificate paths and facegate's port, each checked to
occur exactly once. Checked over HTTPS, with the certificate as the only CA: readiness, HSTS, an
enrol and a verify, /metrics kept private, the liveness WebSocket, plain HTTP redirected, and
the per-address rate limit counting the address nginx saw, not one a client wrote itself. The
doc's path-prefix variant (two changed lines and FACEGATE_ROOT_PATH) is run too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.helpers import missing_resource
from tests.helpers.resources import REPO
from tests.service.conftest import Server, consenting_subject, face, start_server, stop_server
from websockets.sync.client import connect

from facegate.settings import Settings

CONF = REPO / "deploy" / "nginx" / "facegate.conf"
DOC = REPO / "docs" / "operations.md"
HOST = "faces.example.org"
BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"
BIDEN_2 = "Joseph_Biden/face_recognition_biden2.jpg"
ADDRESS_RATE = 60  # per minute: bursts of 10 (middleware.Rate), one more token a second


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else ""
    )
    if not found:
        missing_resource("nginx is not installed: run ./scripts/setup.sh --test (nginx-light)")
    return found


def doc_section() -> str:
    text = DOC.read_text()
    start = text.index("### TLS and a reverse proxy")
    end = text.index("\n## ", start)
    return text[start:end]


def doc_openssl_command(cert: Path, key: Path) -> list[str]:
    """The doc's certificate command, with its two paths moved into the test's folder."""
    section = doc_section()
    match = re.search(r"^ *openssl req .*?(?<!\\)$", section, re.M | re.S)
    assert match, "the doc's TLS section has no 'openssl req' command"
    args = shlex.split(match.group(0).replace("\\\n", " "))
    swaps = {
        f"/etc/ssl/certs/{HOST}.pem": str(cert),
        f"/etc/ssl/private/{HOST}.key": str(key),
    }
    assert all(args.count(old) == 1 for old in swaps), args
    return [swaps.get(a, a) for a in args]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proxy:
    https: str
    http: str
    ca: ssl.SSLContext
    facegate: Server
    folder: Path

    def client(self, local: str = "127.0.0.1", key: str | None = None) -> httpx.Client:
        """An HTTPS client from ``local`` (any 127.x address is this machine's loopback), which
        checks the certificate for faces.example.org against the self-signed one."""
        headers = {"Host": HOST}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        transport = httpx.HTTPTransport(verify=self.ca, local_address=local)
        return httpx.Client(
            base_url=self.https,
            headers=headers,
            transport=transport,
            timeout=60,
        )

    def get(self, client: httpx.Client, path: str, **kw) -> httpx.Response:
        return client.get(path, extensions={"sni_hostname": HOST}, **kw)

    def post(self, client: httpx.Client, path: str, **kw) -> httpx.Response:
        return client.post(path, extensions={"sni_hostname": HOST}, **kw)


def test_doc_shows_the_shipped_config() -> None:
    """The doc's nginx block is deploy/nginx/facegate.conf, verbatim."""
    blocks = re.findall(r"```nginx\n(.*?)```", doc_section(), re.S)
    assert blocks == [CONF.read_text()]


def test_body_limit_matches_the_service() -> None:
    """nginx lets through what facegate accepts (it answers 413 problem+json itself above)."""
    m = re.search(r"client_max_body_size (\d+)m;", CONF.read_text())
    assert m and int(m.group(1)) << 20 > Settings(Path("."), Path(".")).max_body_bytes


PREFIX = "/facegate"


def prefixed(conf: str) -> str:
    """The doc's two-line change for serving facegate under ``PREFIX``: the location, and a
    ``proxy_pass`` with a trailing slash, so that nginx strips the prefix."""
    swaps = {
        "location / {": f"location {PREFIX}/ {{",
        "proxy_pass http://127.0.0.1:8000;": "proxy_pass http://127.0.0.1:8000/;",
    }
    for old, new in swaps.items():
        assert conf.count(old) == 1, old
        conf = conf.replace(old, new)
    return conf


def start_proxy(engine, tmp_path_factory, *, root_path: str = "") -> Iterator[Proxy]:
    nginx = nginx_binary()
    if not shutil.which("openssl"):
        missing_resource("the openssl command is missing (Debian package openssl)")
    tmp = tmp_path_factory.mktemp("nginx")
    cert, key = tmp / f"{HOST}.pem", tmp / f"{HOST}.key"
    done = subprocess.run(doc_openssl_command(cert, key), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert key.stat().st_mode & 0o077 == 0, "the doc's command leaves the key readable"

    server = start_server(
        engine,
        tmp_path_factory.mktemp("behind-nginx"),
        trusted_proxies="127.0.0.1",
        address_rate_per_minute=ADDRESS_RATE,
        root_path=root_path,
    )
    http_port, https_port = free_port(), free_port()
    upstream = server.url.rsplit(":", 1)[1]
    conf = CONF.read_text() if not root_path else prefixed(CONF.read_text())
    for old, new in {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        f"/etc/ssl/certs/{HOST}.pem": str(cert),
        f"/etc/ssl/private/{HOST}.key": str(key),
        "http://127.0.0.1:8000": f"http://127.0.0.1:{upstream}",
    }.items():
        assert conf.count(old) == 1, old
        conf = conf.replace(old, new)
    (tmp / "facegate.conf").write_text(conf)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp}/{kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                          "uwsgi", "scgi")
    )  # fmt: skip
    # as root, nginx would hand its workers to "nobody", who cannot enter pytest's 0700 folders
    user = "user root;\n" if os.geteuid() == 0 else ""
    (tmp / "nginx.conf").write_text(
        f"{user}worker_processes 1;\nerror_log {tmp}/error.log info;\npid {tmp}/nginx.pid;\n"
        f"events {{ worker_connections 64; }}\n"
        f"http {{\n    access_log {tmp}/access.log;\n{temp_paths}\n"
        f"    include {tmp}/facegate.conf;\n}}\n"
    )
    args = [nginx, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(tmp / "nginx.conf")]
    test = subprocess.run([*args, "-t"], capture_output=True, text=True)
    assert test.returncode == 0, test.stderr
    proc = subprocess.Popen(
        [*args, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    ca = ssl.create_default_context(cafile=str(cert))
    p = Proxy(f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", ca, server, tmp)
    deadline = time.time() + 15
    while True:
        try:
            with p.client() as c:
                p.get(c, root_path + "/healthz")
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise AssertionError(
                    f"nginx did not start: {proc.stderr.read() if proc.stderr else b''!r}"
                    f" {(tmp / 'error.log').read_text() if (tmp / 'error.log').exists() else ''}"
                ) from None
            time.sleep(0.1)
    yield p
    proc.terminate()
    proc.wait(timeout=10)
    stop_server(server)


@pytest.fixture(scope="module")
def proxy(engine, tmp_path_factory) -> Iterator[Proxy]:
    yield from start_proxy(engine, tmp_path_factory)


@pytest.fixture(scope="module")
def prefixed_proxy(engine, tmp_path_factory) -> Iterator[Proxy]:
    yield from start_proxy(engine, tmp_path_factory, root_path=PREFIX)


def test_https_ready_with_hsts_and_private_metrics(proxy: Proxy) -> None:
    with proxy.client() as c:
        r = proxy.get(c, "/readyz")
        assert r.status_code == 200, r.text
        assert r.headers["strict-transport-security"] == "max-age=63072000"
        assert "server" not in r.headers or r.headers["server"] == "nginx"  # no version
        assert proxy.get(c, "/metrics").status_code == 403
    assert httpx.get(proxy.facegate.url + "/metrics").status_code == 200  # on its own address
    # whatever the proxy's rules, nothing that came through it reads the metrics
    forwarded = httpx.get(proxy.facegate.url + "/metrics", headers={"X-Forwarded-For": "1.2.3.4"})
    assert forwarded.status_code == 404 and forwarded.json()["code"] == "not_found"


def test_plain_http_redirects_to_https(proxy: Proxy) -> None:
    r = httpx.get(proxy.http + "/readyz?x=1", headers={"Host": HOST})
    assert r.status_code == 301
    assert r.headers["location"] == f"https://{HOST}/readyz?x=1"


def test_enrol_and_verify_through_the_proxy(proxy: Proxy, shared_data: Path) -> None:
    key = proxy.facegate.admin_key
    consenting_subject(proxy.facegate.client(), "proxied-subject")
    with proxy.client(key=key) as c:
        r = proxy.post(c, "/v1/subjects/proxied-subject/enroll",
                       files={"image": ("f.jpg", face(shared_data, BIDEN_1))})  # fmt: skip
        assert r.status_code == 201, r.text
        r = proxy.post(c, "/v1/subjects/proxied-subject/verify",
                       files={"image": ("f.jpg", face(shared_data, BIDEN_2))})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["match"] is True
        assert r.headers["x-request-id"]  # nginx's $request_id, kept by facegate
        assert (
            proxy.get(c, "/v1/tenant", headers={"Authorization": "Bearer fg_x_y"}).status_code
            == 401
        )


def test_liveness_websocket_through_the_proxy(proxy: Proxy) -> None:
    url = proxy.https.replace("https://", "wss://") + "/v1/liveness/stream"
    with connect(url, ssl=proxy.ca, server_hostname=HOST, open_timeout=20) as ws:
        ws.send(json.dumps({"type": "start", "key": "fg_nope_nope", "subject_id": "x",
                            "purpose": "verify"}))  # fmt: skip
        msg = json.loads(ws.recv(timeout=20))
    assert (msg["type"], msg["code"]) == ("error", "unauthenticated")


def test_rate_limit_counts_the_address_nginx_saw(proxy: Proxy) -> None:
    """facegate sees every request from nginx (127.0.0.1, trusted): the limit must count the
    client's address from X-Forwarded-For, which nginx sets to its $remote_addr; a header the
    client wrote itself is replaced, so forging it buys no fresh bucket."""
    with proxy.client("127.0.0.2") as c:
        statuses = [proxy.get(c, "/readyz").status_code for _ in range(15)]
        assert statuses[0] == 200 and statuses[-1] == 429, statuses
        forged = proxy.get(c, "/readyz", headers={"X-Forwarded-For": "127.0.0.77"})
        assert forged.status_code == 429
        forged = proxy.get(c, "/readyz", headers={"X-Forwarded-For": "127.0.0.77, 127.0.0.78"})
        assert forged.status_code == 429
    with proxy.client("127.0.0.3") as c:  # another client: its own bucket
        assert proxy.get(c, "/readyz").status_code == 200
    deadline = time.time() + 5  # nginx writes the line just after the answer
    while "127.0.0.3 - -" not in (log := (proxy.folder / "access.log").read_text()):
        assert time.time() < deadline, log
        time.sleep(0.05)
    assert "127.0.0.2 - -" in log


def test_under_a_path_prefix(prefixed_proxy: Proxy) -> None:
    """The doc's prefix variant: the capture link's address carries the prefix, the page and
    its scripts load from under it, the API answers there, and so does the WebSocket."""
    p, key = prefixed_proxy, prefixed_proxy.facegate.admin_key
    consenting_subject(p.facegate.client(), "prefixed-subject")
    with p.client(key=key) as c:
        assert p.get(c, PREFIX + "/readyz").status_code == 200
        assert p.get(c, "/readyz").status_code == 404  # nothing outside the prefix
        # the doc's deny rule is for /metrics; under the prefix facegate itself refuses
        for path in (PREFIX + "/metrics", PREFIX + PREFIX + "/metrics"):
            assert p.get(c, path).status_code == 404, path
        link = p.post(c, PREFIX + "/v1/capture-links",
                      json={"subject_id": "prefixed-subject", "flow": "verify"})  # fmt: skip
        assert link.status_code == 201, link.text
        url = link.json()["url"]
        assert url.startswith(PREFIX + "/"), url
    with p.client() as c:
        page = p.get(c, url)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        scripts = re.findall(r'src="([^"]+\.js)"', page.text)
        assert scripts and all(not s.startswith("/") for s in scripts), scripts  # relative
        for script in scripts:
            assert p.get(c, f"{PREFIX}/{script}").status_code == 200, script
    wss = p.https.replace("https://", "wss://") + PREFIX + "/v1/liveness/stream"
    with connect(wss, ssl=p.ca, server_hostname=HOST, open_timeout=20) as ws:
        ws.send(json.dumps({"type": "start", "key": "fg_nope_nope", "subject_id": "x",
                            "purpose": "verify"}))  # fmt: skip
        msg = json.loads(ws.recv(timeout=20))
    assert (msg["type"], msg["code"]) == ("error", "unauthenticated")
