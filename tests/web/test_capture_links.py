"""Capture links that fix the check (evaluation tenants only) and the page's message files."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.service.conftest import start_server, stop_server

STATIC = Path(__file__).resolve().parents[2] / "src" / "facegate" / "web" / "static"


def test_fixed_actions_and_no_flash_only_on_an_evaluation_tenant(engine, tmp_path) -> None:
    server = start_server(engine, tmp_path)
    try:
        alpha = server.client()
        alpha.post("/v1/subjects", json={"subject_id": "fixed"})
        body = {"subject_id": "fixed", "flow": "verify"}
        r = alpha.post("/v1/capture-links", json={**body, "actions": ["blink"], "flash": False})
        assert r.status_code == 201, r.text
        r = alpha.post("/v1/capture-links", json={**body, "actions": ["wave"]})
        assert r.status_code == 400 and r.json()["code"] == "invalid_actions"
        opened = server.service.capture.open_with_options(r_token(alpha, body))
        assert opened[3:] == (None, None)

        _, key = server.service.create_tenant("beta")  # secure defaults
        beta = server.client(key)
        beta.post("/v1/subjects", json={"subject_id": "fixed"})
        for extra in ({"actions": ["blink"]}, {"flash": False}):
            r = beta.post("/v1/capture-links", json={**body, **extra})
            assert r.status_code == 403 and r.json()["code"] == "chosen_actions_not_allowed"
        assert beta.post("/v1/capture-links", json={**body, "flash": True}).status_code == 201
    finally:
        stop_server(server)


def r_token(client, body: dict) -> str:
    r = client.post("/v1/capture-links", json=body)
    assert r.status_code == 201, r.text
    return r.json()["capture_token"]


def test_every_string_of_the_page_is_in_both_message_files() -> None:
    en = json.loads((STATIC / "i18n" / "en.json").read_text())
    zh = json.loads((STATIC / "i18n" / "zh-CN.json").read_text())
    assert set(en) == set(zh)
    assert all(isinstance(v, str) and v for v in [*en.values(), *zh.values()])
    html = (STATIC / "index.html").read_text()
    used = set(re.findall(r'data-i18n(?:-[a-z-]+)?="([^"]+)"', html))
    js = "\n".join(p.read_text() for p in STATIC.glob("*.js"))
    keys = r'"((?:record|result|camera|noflash|title|step|feedback)\.[a-z_.]+)"'
    used |= set(re.findall(keys, js))
    assert used <= set(en), used - set(en)
    # every message of the one reason table, both what went wrong and what to do
    table = (STATIC / "reasons.js").read_text()
    for msg in set(re.findall(r'R\("([a-z_]+)"', table)):
        assert f"reason.{msg}" in en and f"reason.{msg}.todo" in en, msg
    # no text outside the message files: the HTML has no literal text between tags
    bare = [t.strip() for t in re.findall(r">([^<>]+)<", html) if t.strip()]
    assert set(bare) <= {".", "facegate"}, bare  # the <title> is replaced at load
    for action in ("blink", "turn_left", "turn_right", "look_up", "look_down", "open_mouth"):
        assert f"action.{action}" in en
    for code in ("ok", "no_face", "multiple_faces", "move_closer", "move_back"):
        assert f"feedback.{code}" in en
