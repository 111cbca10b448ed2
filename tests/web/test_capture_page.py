"""The capture page on the streamed check, in real Chromium with a fake camera (conftest.py):
success (live and a match), failure, decline, camera denied, reduced motion, cancel, an invalid
link and the language switch; axe-core on every screen, results printed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import Error as PlaywrightError
from tests.web.conftest import ARTIFACTS, Sockets, axe, capture_link, launch, screen, shot

FIXED = {"actions": ["open_mouth"], "flash": False}  # what the recorded camera can answer
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True}


def run_to_decision(page, name: str, sockets: Sockets) -> dict:
    page.wait_for_selector("#rec:not([hidden])", timeout=20_000)  # streaming
    page.wait_for_timeout(900)
    shot(page, f"{name}-3-streaming")
    # the progress screen shows while the decision is made (0.2-0.5 s)
    either = "#step-deciding:not([hidden]), #step-result:not([hidden])"
    page.wait_for_selector(either, timeout=60_000)
    try:
        if page.is_visible("#step-deciding"):
            shot(page, f"{name}-4-deciding")
    except PlaywrightError:
        pass
    screen(page, "result", timeout=90_000)
    shot(page, f"{name}-5-result")
    verdict = sockets.last("verdict")
    assert verdict is not None, sockets.received[-3:]
    assert page.get_attribute("#decision", "data-live") == str(verdict["live"]).lower()
    assert page.evaluate("document.getElementById('preview').srcObject") is None  # camera off
    sent = page.evaluate("({...document.getElementById('app').dataset})")
    print(f"{name}: {sent}, stream {verdict['stream']}, timings {verdict['timings_ms']}")
    return verdict


def test_success_enrol_then_verify_live_and_match(browser_env, y4m: Path, axe_source, capsys):
    server, pw = browser_env
    browser = launch(pw, y4m)
    page = browser.new_page(viewport=DESKTOP)
    sockets = Sockets(page)
    page.goto(capture_link(server, "web-ok", "enroll", **FIXED))
    screen(page, "consent")
    tenant = server.client().get("/v1/tenant").json()
    assert page.inner_text("#consent-text") == tenant["consent_text"]
    assert "flash" in page.inner_text("#step-consent")  # said before any flash
    shot(page, "ok-1-consent")
    axe(page, axe_source, "consent", capsys)
    page.keyboard.press("Tab")  # usable by keyboard: from the heading, the first button
    assert page.evaluate("document.activeElement.id") == "btn-agree"
    page.keyboard.press("Enter")
    screen(page, "camera")
    shot(page, "ok-2-camera")
    axe(page, axe_source, "camera", capsys)
    page.dblclick("#btn-start")  # a double tap starts one check
    page.wait_for_selector("#rec:not([hidden])", timeout=20_000)
    axe(page, axe_source, "streaming", capsys)
    enrolled = run_to_decision(page, "ok-enrol", sockets)
    assert sockets.opened == 1
    assert enrolled["live"], enrolled["reasons"]
    assert enrolled["result"] and enrolled["flow"] == "enroll"
    assert page.inner_text("#decision") == "You are set up"
    assert page.is_hidden("#btn-retry")
    axe(page, axe_source, "result-success", capsys)
    consent = server.client().get("/v1/subjects/web-ok").json()["consent"]
    assert consent and consent["method"].startswith("capture page")
    browser.close()

    browser = launch(pw, y4m)
    page = browser.new_page(**PHONE)
    sockets = Sockets(page)
    page.goto(capture_link(server, "web-ok", "verify", **FIXED))
    screen(page, "camera")  # consent given on the enrolment
    shot(page, "ok-verify-2-camera-phone")
    page.click("#btn-start")
    page.wait_for_selector("#countdown:not(:empty)")
    shot(page, "ok-verify-2b-countdown-phone")
    verified = run_to_decision(page, "ok-verify-phone", sockets)
    assert verified["live"], verified["reasons"]
    assert verified["result"]["match"] is True
    assert page.get_attribute("#decision", "data-match") == "true"
    assert page.inner_text("#decision") == "It is you"
    browser.close()


def flash_painted(page, tries: int = 6) -> bool:
    """A screenshot taken while a colour step shows has that colour in the middle of the screen
    (under forced colours too)."""
    for _ in range(tries):
        page.wait_for_selector("#flash:not([hidden])", timeout=20_000)
        colour = page.get_attribute("#flash", "data-colour") or ""
        png = page.screenshot()
        if page.is_hidden("#flash"):
            continue  # the step ended while the picture was taken: try the next colour
        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        b, g, r = (int(x) for x in img[img.shape[0] // 2, img.shape[1] // 2])
        want = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        if max(abs(r - want[0]), abs(g - want[1]), abs(b - want[2])) <= 12:
            (ARTIFACTS / "fail-3b-flash-forced-colours.png").write_bytes(png)
            return True
        page.wait_for_selector("#flash", state="hidden", timeout=5_000)
    return False


def test_failure_says_which_step_and_offers_the_alternative(
    browser_env, y4m: Path, axe_source, capsys
):
    """The server's own challenge (actions and a colour flash) against a recording that shows
    no reflection: not live; the page names the failed step and the alternative. The flash is
    painted in forced-colours mode."""
    server, pw = browser_env
    browser = launch(pw, y4m)
    page = browser.new_page(viewport=DESKTOP)
    page.emulate_media(forced_colors="active")
    sockets = Sockets(page)
    page.goto(capture_link(server, "web-fail", "verify", consent=True))
    screen(page, "camera")
    page.click("#btn-start")
    assert flash_painted(page)
    verdict = run_to_decision(page, "fail", sockets)
    assert not verdict["live"]
    assert page.is_visible("#fail-step") and page.is_visible("#fail-todo")
    step = page.inner_text("#fail-step")
    assert step.startswith("The step that failed:"), step
    code = page.get_attribute("#fail-what", "data-code")
    assert code in {r["code"] for r in verdict["reasons"]}
    tenant = server.client().get("/v1/tenant").json()
    assert page.inner_text("#result-alternative") == tenant["non_face_alternative"]
    assert page.is_visible("#btn-retry")  # a verification link may be used again
    axe(page, axe_source, "result-failure", capsys)
    page.emulate_media(forced_colors="none")
    shot(page, "fail-5b-result-normal-colours")
    browser.close()


def test_declining_consent_leads_to_the_alternative(browser_env, axe_source, capsys) -> None:
    server, pw = browser_env
    browser = launch(pw, None)
    page = browser.new_page()
    page.goto(capture_link(server, "web-decline", "enroll"))
    screen(page, "consent")
    page.dblclick("#btn-decline")
    screen(page, "declined")
    tenant = server.client().get("/v1/tenant").json()
    assert page.inner_text("#alternative-text") == tenant["non_face_alternative"]
    shot(page, "decline")
    axe(page, axe_source, "declined", capsys)
    assert server.client().get("/v1/subjects/web-decline").json()["consent"] is None
    browser.close()


def test_camera_permission_denied_shows_help(browser_env, axe_source, capsys) -> None:
    server, pw = browser_env
    browser = launch(pw, None)
    page = browser.new_page()
    sockets = Sockets(page)
    page.goto(capture_link(server, "web-denied", "verify", consent=True))
    screen(page, "camera")
    page.click("#btn-start")
    page.wait_for_selector("#camera-error:not([hidden])", timeout=20_000)
    assert page.get_attribute("#camera-error", "data-code") in ("camera_denied", "camera_missing")
    text = page.inner_text("#camera-error")
    assert "blocked" in text or "No camera" in text
    assert "Another way" in text
    assert sockets.opened == 0
    shot(page, "camera-denied")
    axe(page, axe_source, "camera-denied", capsys)
    browser.close()


def test_reduced_motion_goes_to_the_alternative_before_any_flash(
    browser_env, y4m: Path, axe_source, capsys
) -> None:
    server, pw = browser_env
    browser = launch(pw, y4m)
    context = browser.new_context(reduced_motion="reduce")
    page = context.new_page()
    sockets = Sockets(page)
    page.goto(capture_link(server, "web-motion", "enroll"))
    screen(page, "consent")
    page.click("#btn-agree")
    screen(page, "noflash")
    assert "reduced motion" in page.inner_text("#noflash-why")
    tenant = server.client().get("/v1/tenant").json()
    assert page.inner_text("#noflash-alternative") == tenant["non_face_alternative"]
    shot(page, "reduced-motion")
    axe(page, axe_source, "noflash", capsys)
    assert sockets.opened == 0 and page.is_hidden("#flash")
    page.click("#btn-flash-ok")  # an explicit choice to see the colours
    screen(page, "camera")
    page.click("#btn-noflash")  # and declining the flash from the camera screen
    screen(page, "noflash")
    assert "reduced motion" not in page.inner_text("#noflash-why")
    assert sockets.opened == 0
    browser.close()


def test_cancel_stops_the_check_and_the_camera(browser_env, y4m: Path) -> None:
    server, pw = browser_env
    browser = launch(pw, y4m)
    page = browser.new_page(viewport=DESKTOP)
    sockets = Sockets(page)
    page.goto(capture_link(server, "web-cancel", "verify", consent=True, **FIXED))
    screen(page, "camera")
    page.click("#btn-start")
    page.wait_for_selector("#rec:not([hidden])", timeout=20_000)
    page.click("#btn-cancel")
    screen(page, "camera")
    assert page.is_visible("#camera-note")
    page.wait_for_function("() => document.getElementById('preview').srcObject === null")
    shot(page, "cancelled")
    page.wait_for_timeout(500)
    assert sockets.opened == 1
    browser.close()


def test_invalid_link_is_explained(browser_env, axe_source, capsys) -> None:
    server, pw = browser_env
    browser = launch(pw, None)
    page = browser.new_page()
    page.goto(server.url + "/?t=forged.token")
    screen(page, "error")
    assert "not valid" in page.inner_text("#error-text")
    shot(page, "invalid-link")
    axe(page, axe_source, "error", capsys)
    browser.close()


def test_language_from_the_browser_and_the_switch(browser_env, axe_source, capsys) -> None:
    server, pw = browser_env
    browser = launch(pw, None)
    page = browser.new_context(locale="zh-CN").new_page()
    page.goto(capture_link(server, "web-zh", "enroll"))
    screen(page, "consent")
    assert page.inner_text("#step-consent h1") == "在查看您的面部之前"
    assert page.get_attribute("html", "lang") == "zh-CN"
    shot(page, "zh-consent")
    axe(page, axe_source, "consent-zh", capsys)
    page.select_option("#lang", "en")
    page.wait_for_function("() => document.documentElement.lang === 'en'")
    assert page.inner_text("#step-consent h1") == "Before we look at your face"
    assert page.inner_text("#btn-agree") == "I agree"
    browser.close()
