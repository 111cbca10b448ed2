"""The capture page in a real browser: headless Chromium (Debian's package) driven by Playwright,
with a fake camera fed from a real video of ../shared/data/videos (converted to y4m at test time).

Screenshots of every step are saved under test-artifacts/capture/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

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


@pytest.fixture(scope="module")
def y4m(shared_data: Path, tmp_path_factory) -> Path:
    """640x480, 15 fps, 5 s of a real face video, as Chromium's fake camera reads it."""
    out = tmp_path_factory.mktemp("camera") / "face.y4m"
    cap = cv2.VideoCapture(str(shared_data / "videos" / "liveportrait_d18.mp4"))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    with out.open("wb") as fh:
        fh.write(b"YUV4MPEG2 W640 H480 F15:1 Ip A1:1 C420jpeg\n")
        written, index = 0, 0
        while written < 75:
            ok, frame = cap.read()
            if not ok:
                break
            if index * 15 / fps >= written:  # resample to 15 fps
                square = cv2.resize(frame, (480, 480))
                canvas = cv2.copyMakeBorder(
                    square, 0, 0, 80, 80, cv2.BORDER_CONSTANT, value=(40, 40, 40)
                )
                fh.write(b"FRAME\n" + cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420).tobytes())
                written += 1
            index += 1
    cap.release()
    return out


@pytest.fixture(scope="module")
def browser_env(engine, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        missing_resource("Chromium is missing: run ./scripts/setup.sh --test (Debian's chromium)")
    from playwright.sync_api import sync_playwright

    server = start_server(engine, tmp_path_factory.mktemp("web"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        yield server, pw
    stop_server(server)


def capture_link(server, subject: str, flow: str, consent: bool = False) -> str:
    c = server.client()
    c.post("/v1/subjects", json={"subject_id": subject})
    if consent:
        version = c.get("/v1/tenant").json()["consent_text_version"]
        c.post(f"/v1/subjects/{subject}/consents", json={"text_version": version, "method": "test"})
    r = c.post("/v1/capture-links", json={"subject_id": subject, "flow": flow})
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


def run_to_decision(page, name: str) -> dict:
    page.click("#btn-start")
    page.wait_for_selector("#step-record:not([hidden])", timeout=20_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / f"{name}-3-recording.png"))
    with page.expect_response("**/v1/capture/submit", timeout=90_000) as response:
        pass
    server_answer = response.value.json()
    page.wait_for_selector("#step-result:not([hidden])", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / f"{name}-4-decision.png"))
    shown = page.get_attribute("#decision", "data-live")
    assert shown == str(server_answer["live"]).lower()
    shown_codes = set(
        page.eval_on_selector_all("#reasons li", "els => els.map(e => e.dataset.code)")
    )
    assert shown_codes == {r["code"] for r in server_answer["reasons"]}
    assert page.evaluate("document.getElementById('preview').srcObject") is None  # camera released
    return server_answer


def test_enrol_flow_with_consent_runs_to_a_decision(browser_env, y4m: Path) -> None:
    server, pw = browser_env
    browser = launch(pw, y4m)
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.goto(capture_link(server, "web-enrol", "enroll"))
    page.wait_for_selector("#step-consent:not([hidden])")
    tenant = server.client().get("/v1/tenant").json()
    assert page.inner_text("#consent-text") == tenant["consent_text"]
    page.screenshot(path=str(ARTIFACTS / "enrol-1-consent.png"))
    page.keyboard.press("Tab")  # usable by keyboard: the first button takes focus
    assert page.evaluate("document.activeElement.id") == "btn-agree"
    page.keyboard.press("Enter")
    page.wait_for_selector("#step-camera:not([hidden])")
    page.screenshot(path=str(ARTIFACTS / "enrol-2-camera.png"))
    answer = run_to_decision(page, "enrol")
    assert answer["flow"] == "enroll"
    consent = server.client().get("/v1/subjects/web-enrol").json()["consent"]
    assert consent and consent["method"].startswith("capture page")
    browser.close()


def test_verify_flow_on_a_phone_sized_screen(browser_env, y4m: Path) -> None:
    server, pw = browser_env
    browser = launch(pw, y4m)
    page = browser.new_page(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    page.goto(capture_link(server, "web-verify", "verify", consent=True))
    page.wait_for_selector("#step-camera:not([hidden])")
    page.screenshot(path=str(ARTIFACTS / "phone-2-camera.png"))
    answer = run_to_decision(page, "phone")
    assert answer["flow"] == "verify"
    if not answer["live"]:
        assert page.is_visible("#btn-retry")
    browser.close()


def test_declining_consent_leads_to_the_alternative(browser_env) -> None:
    server, pw = browser_env
    browser = launch(pw, None)
    page = browser.new_page()
    page.goto(capture_link(server, "web-decline", "enroll"))
    page.click("#btn-decline")
    page.wait_for_selector("#step-declined:not([hidden])")
    tenant = server.client().get("/v1/tenant").json()
    assert page.inner_text("#alternative-text") == tenant["non_face_alternative"]
    page.screenshot(path=str(ARTIFACTS / "decline.png"))
    assert server.client().get("/v1/subjects/web-decline").json()["consent"] is None
    browser.close()


def test_camera_permission_denied_shows_help(browser_env) -> None:
    server, pw = browser_env
    browser = launch(pw, None)
    page = browser.new_page()
    page.goto(capture_link(server, "web-denied", "verify", consent=True))
    page.click("#btn-start")
    page.wait_for_selector("#camera-error:not([hidden])", timeout=20_000)
    text = page.inner_text("#camera-error")
    assert "blocked" in text or "No camera" in text
    assert "Alternatively" in text
    page.screenshot(path=str(ARTIFACTS / "camera-denied.png"))
    browser.close()


def test_invalid_link_is_explained(browser_env) -> None:
    server, pw = browser_env
    browser = launch(pw, None)
    page = browser.new_page()
    page.goto(server.url + "/?t=forged.token")
    page.wait_for_selector("#step-error:not([hidden])")
    assert "not valid" in page.inner_text("#error-text")
    browser.close()
