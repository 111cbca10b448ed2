"""The capture page in a real browser: headless Chromium (Debian's package) driven by Playwright,
with a fake camera fed from a real video of ../shared/data/videos (converted to y4m at test
time), and axe-core from npm (packed into a temporary folder, injected through the DevTools
protocol so the page's CSP stays as served). Screenshots go to test-artifacts/capture/."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest
from tests.helpers import missing_resource
from tests.service.conftest import start_server, stop_server

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "capture"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
QUIET = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# liveportrait_d18: head static, mouth opens at ~2-2.9 s. The camera loops 0.8-3.3 s of it, so
# any stretch of 2.5 s shows the mouth closed, opening and closing again (the fixed action).
LOOP_S = (0.8, 3.3)


@pytest.fixture(scope="session")
def y4m(shared_data: Path, tmp_path_factory) -> Path:
    """640x480, 15 fps, the face in the middle, as Chromium's fake camera reads it."""
    out = tmp_path_factory.mktemp("camera") / "face.y4m"
    cap = cv2.VideoCapture(str(shared_data / "videos" / "liveportrait_d18.mp4"))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    first, last = (round(s * 15) for s in LOOP_S)
    with out.open("wb") as fh:
        fh.write(b"YUV4MPEG2 W640 H480 F15:1 Ip A1:1 C420jpeg\n")
        written, index = 0, 0
        while written < last:
            ok, frame = cap.read()
            if not ok:
                break
            if index * 15 / fps >= written:  # resample to 15 fps
                if written >= first:
                    square = cv2.resize(frame, (480, 480))
                    canvas = cv2.copyMakeBorder(
                        square, 0, 0, 80, 80, cv2.BORDER_CONSTANT, value=(40, 40, 40)
                    )
                    yuv = cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420)
                    fh.write(b"FRAME\n" + yuv.tobytes())
                written += 1
            index += 1
    cap.release()
    return out


@pytest.fixture(scope="session")
def axe_source(tmp_path_factory) -> str:
    """axe.min.js from npm (``npm pack axe-core``), nothing committed."""
    npm = shutil.which("npm")
    if npm is None:
        missing_resource("npm is missing: axe-core comes from npm")
    folder = tmp_path_factory.mktemp("axe")
    done = subprocess.run(
        [npm, "pack", "axe-core@4", "--silent"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=180,
    )
    packs = list(folder.glob("axe-core-*.tgz"))
    if done.returncode != 0 or not packs:
        missing_resource(f"npm pack axe-core failed: {done.stderr.strip()[-300:]}")
    with tarfile.open(packs[0]) as tar:
        member = tar.extractfile("package/axe.min.js")
        assert member is not None
        return member.read().decode()


@pytest.fixture(scope="module")
def browser_env(engine, tmp_path_factory) -> Iterator[tuple[Any, Any]]:
    if not Path(CHROMIUM).exists():
        missing_resource("Chromium is missing: run ./scripts/setup.sh --test (Debian's chromium)")
    from playwright.sync_api import sync_playwright

    server = start_server(engine, tmp_path_factory.mktemp("web"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        yield server, pw
    stop_server(server)


def capture_link(server, subject: str, flow: str, consent: bool = False, **fixed: Any) -> str:
    c = server.client()
    c.post("/v1/subjects", json={"subject_id": subject})
    if consent:
        version = c.get("/v1/tenant").json()["consent_text_version"]
        c.post(f"/v1/subjects/{subject}/consents", json={"text_version": version, "method": "test"})
    r = c.post("/v1/capture-links", json={"subject_id": subject, "flow": flow, **fixed})
    assert r.status_code == 201, r.text
    return server.url + r.json()["url"]


def launch(pw, camera: Path | None):
    args = list(QUIET)
    if camera is not None:
        args += [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}",
        ]
    else:
        args += ["--use-fake-device-for-media-stream", "--deny-permission-prompts"]
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def screen(page, name: str, timeout: float = 20_000) -> None:
    page.wait_for_selector(f"#step-{name}:not([hidden])", timeout=timeout)


def axe(page, source: str, name: str, capsys) -> list[dict[str, Any]]:
    """Run axe-core on the screen shown; print its results; fail on serious or critical."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(source)  # DevTools evaluation: the page's CSP is not loosened
    result = page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return {violations: r.violations.map(v => ({id: v.id, impact: v.impact,"
        " help: v.help, nodes: v.nodes.map(n => n.target.join(' '))})),"
        " passes: r.passes.length, incomplete: r.incomplete.length}; }"
    )
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(result, indent=1))
    violations = result["violations"]
    with capsys.disabled():
        found = ", ".join(f"{v['id']} ({v['impact']}: {v['nodes']})" for v in violations)
        print(
            f"\naxe [{name}] passes={result['passes']} incomplete={result['incomplete']}"
            f" violations={len(violations)}" + (f": {found}" if found else "")
        )
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, bad
    return violations


class Sockets:
    """The page's WebSockets and the JSON messages the server sent on them."""

    def __init__(self, page) -> None:
        self.opened = 0
        self.received: list[dict[str, Any]] = []
        page.on("websocket", self._opened)

    def _opened(self, ws) -> None:
        self.opened += 1
        ws.on("framereceived", self._frame)

    def _frame(self, payload) -> None:
        if isinstance(payload, str):
            self.received.append(json.loads(payload))

    def last(self, kind: str) -> dict[str, Any] | None:
        found = [m for m in self.received if m.get("type") == kind]
        return found[-1] if found else None
