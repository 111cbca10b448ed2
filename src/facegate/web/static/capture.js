// facegate capture page: consent, camera, a streamed check (stream.js), the decision.
// One attempt at a time: every button runs through `guard`, which ignores clicks while any
// action runs. Nothing of the face is kept: frames go out one at a time and the camera is
// stopped as soon as the check ends. Words come from i18n/<lang>.json; failures are explained
// from the one table in reasons.js. Framed by a relying party's page (embed.js), the outcome
// is posted to that page's origin, which the server checked against the tenant's list.
import { load, pickLanguage, setText } from "./i18n.js";
import { entry, explain } from "./reasons.js";
import { StreamSession } from "./stream.js";

const token = new URLSearchParams(location.search).get("t") || "";
const ROOT = new URL("../", import.meta.url); // the service's root, under any path prefix
const EMBED = document.querySelector('meta[name="facegate-embed"]').dataset; // origin, link
const $ = (id) => document.getElementById(id);
const SCREENS = ["loading", "error", "consent", "declined", "noflash", "camera", "record", "deciding", "result"];
const COUNTDOWN_S = 3;
const reducedMotion = matchMedia("(prefers-reduced-motion: reduce)");
let info = null, camera = null, session = null, busy = false, flashAccepted = false;
let attempt = null; // {steps, current, cancelled}

function show(name) {
  for (const s of SCREENS) $("step-" + s).hidden = s !== name;
  document.body.dataset.screen = name;
  const h = document.querySelector(`#step-${name} h1`);
  if (h) h.focus();
}

function guard(fn) {
  return async (event) => {
    if (busy) return;
    busy = true;
    $("app").setAttribute("aria-busy", "true");
    try {
      await fn(event);
    } finally {
      busy = false;
      $("app").removeAttribute("aria-busy");
    }
  };
}

function on(id, fn) {
  $(id).addEventListener("click", guard(fn));
}

async function api(path, method = "GET") {
  const res = await fetch(new URL(path, ROOT), { method, headers: { "X-Capture-Token": token } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(body.code || "unknown"), { code: body.code || "unknown" });
  return body;
}

// The outcome for the embedding page: the link, its flow, a status and reason codes, nothing
// of the face and no score. Only to the origin the server approved ("*" never), and only when
// framed: a hint for the page's UI; the relying party's server asks GET /v1/capture-links/{id}.
function report(status, reasons = []) {
  if (!EMBED.origin || window.parent === window) return;
  const message = {
    type: "facegate:capture", version: 1, link_id: EMBED.link, flow: info ? info.flow : null,
    status, reasons: reasons.map((r) => String(r.code || r)).slice(0, 8),
  };
  window.parent.postMessage(message, EMBED.origin);
}

function fail(code) {
  report("error", [code]);
  setText($("error-text"), "reason." + entry(code).msg);
  setText($("error-todo"), "reason." + entry(code).msg + ".todo");
  $("error-text").dataset.code = code;
  show("error");
}

function alternative() {
  return info ? info.non_face_alternative : "";
}

// The chosen language, where storage may be used: a browser that blocks third-party storage
// throws on localStorage inside a relying party's frame, and the page must still work.
function stored(key, value) {
  try {
    if (value === undefined) return localStorage.getItem(key);
    localStorage.setItem(key, value);
  } catch {
    // no storage here: the browser's language is used
  }
  return null;
}

async function start() {
  const saved = stored("facegate.lang");
  await load(saved || pickLanguage(navigator.languages || [navigator.language]));
  $("lang").value = document.documentElement.lang;
  $("lang").addEventListener("change", async () => {
    stored("facegate.lang", $("lang").value);
    await load($("lang").value);
  });
  if (!token) return fail("invalid_capture_token");
  try {
    info = await api("v1/capture/info");
  } catch (e) {
    return fail(e.code);
  }
  setText($("title"), info.flow === "enroll" ? "title.enroll" : "title.verify");
  for (const id of ["alternative-text", "noflash-alternative", "camera-alternative", "result-alternative"]) {
    $(id).textContent = alternative();
  }
  if (info.consent_given) return toCamera();
  $("consent-text").textContent = info.consent_text;
  $("consent-version").textContent = info.consent_text_version;
  show("consent");
}

// Before any flash: a person who asks for reduced motion is offered the alternative first.
function toCamera() {
  if (reducedMotion.matches && !flashAccepted) {
    setText($("noflash-why"), "noflash.reduced_motion");
    return show("noflash");
  }
  show("camera");
}

on("btn-agree", async () => {
  try {
    await api("v1/capture/consent", "POST");
  } catch (e) {
    return fail(e.code);
  }
  toCamera();
});

on("btn-decline", async () => {
  try {
    const r = await api("v1/capture/decline", "POST");
    $("alternative-text").textContent = r.non_face_alternative;
  } catch {
    // the alternative from /info is already there
  }
  show("declined");
  report("declined");
});

on("btn-noflash", async () => {
  setText($("noflash-why"), "noflash.declined");
  show("noflash");
});

on("btn-flash-ok", async () => {
  flashAccepted = true;
  show("camera");
});

function cameraError(err) {
  const denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
  const code = denied ? "camera_denied" : "camera_missing";
  $("camera-error").dataset.code = code;
  setText($("camera-error-text"), "reason." + entry(code).msg);
  setText($("camera-error-todo"), "reason." + entry(code).msg + ".todo");
  $("camera-error").hidden = false;
  $("btn-camera-retry").focus();
}

async function openCamera() {
  $("camera-error").hidden = true;
  $("camera-note").hidden = true;
  try {
    camera = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" }, audio: false,
    });
  } catch (err) {
    return cameraError(err);
  }
  await runCheck();
}
on("btn-start", openCamera);
on("btn-camera-retry", openCamera);

function stopCamera() {
  if (camera) camera.getTracks().forEach((track) => track.stop());
  camera = null;
  $("preview").srcObject = null;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// the message key naming a step
function stepKey(step) {
  if (!step) return "step.whole";
  if (step.kind === "action") return "action." + step.action;
  if (step.kind === "colour") return "step.colours";
  return "step.settle";
}

// ---- the flash: a canvas (forced colours never repaint canvas pixels) -------------------------
let flashTimer = null;
function flash(colour, ms) {
  const canvas = $("flash");
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = colour;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  canvas.dataset.colour = colour;
  canvas.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => { canvas.hidden = true; }, ms);
}
function flashOff() {
  clearTimeout(flashTimer);
  $("flash").hidden = true;
}

// ---- feedback: the server's hint first, the page's own (too dark, hold still) otherwise ------
let serverHint = null, localHint = null;
function renderFeedback() {
  const code = serverHint && serverHint !== "ok" ? serverHint : localHint || serverHint;
  const el = $("feedback");
  if (el.dataset.code === (code || "")) return;
  el.dataset.code = code || "";
  $("oval").dataset.state = code === "ok" ? "ok" : code ? "warn" : "";
  if (code) setText(el, "feedback." + code);
  else el.textContent = "";
}

async function runCheck() {
  show("record");
  const video = $("preview");
  video.srcObject = camera;
  attempt = { steps: 0, current: null, cancelled: false };
  const mine = attempt;
  serverHint = localHint = null;
  renderFeedback();
  $("step-bar").style.transitionDuration = "0ms";
  $("step-bar").style.width = "0";
  $("step-count").textContent = "";
  $("rec").hidden = true;
  setText($("prompt"), "record.get_ready");
  if (video.readyState < 2) await new Promise((resolve) => video.addEventListener("loadeddata", resolve, { once: true }));
  for (let n = COUNTDOWN_S; n > 0; n--) {
    if (mine.cancelled) return;
    $("countdown").textContent = String(n);
    setText($("prompt"), "record.countdown", { n });
    await sleep(1000);
  }
  $("countdown").textContent = "";
  if (mine.cancelled) return;
  session = new StreamSession(video, token, {
    ready: (msg) => {
      mine.steps = msg.steps;
      $("rec").hidden = false;
    },
    step: (msg) => {
      mine.current = msg;
      if (msg.kind === "colour") flash(msg.colour, msg.duration_ms);
      setText($("prompt"), msg.kind === "action" ? "action." + msg.action : "step." + msg.kind + ".prompt");
      setText($("step-count"), "record.step_of", { i: msg.index + 1, n: mine.steps });
      const bar = $("step-bar"); // fills across the step: how long is left for it
      bar.style.transitionDuration = `${msg.duration_ms}ms`;
      bar.style.width = `${Math.round((100 * (msg.index + 1)) / Math.max(mine.steps, 1))}%`;
    },
    feedback: (code) => { serverHint = code; renderFeedback(); },
    hint: (code) => {
      localHint = mine.current && mine.current.kind === "colour" ? null : code;
      if (code === "hold_still" && !(mine.current && mine.current.kind === "settle")) localHint = null;
      renderFeedback();
    },
    done: () => {
      setText($("prompt"), "record.done");
      setTimeout(() => { if (!mine.cancelled && session) show("deciding"); }, 350);
    },
  });
  const outcome = await session.run();
  const stats = session.stats();
  session = null;
  flashOff();
  stopCamera();
  $("app").dataset.framesSent = String(stats.frames);
  $("app").dataset.bytesSent = String(stats.bytes);
  if (mine.cancelled) return;
  if (outcome.verdict) return showVerdict(outcome.verdict, mine);
  showFailure([{ code: outcome.error }], mine, []);
}

$("btn-cancel").addEventListener("click", () => {
  if (!attempt || attempt.cancelled) return;
  attempt.cancelled = true;
  if (session) session.cancel();
  flashOff();
  stopCamera();
  $("camera-note").hidden = false;
  setText($("camera-note"), "camera.cancelled");
  show("camera");
});

function showVerdict(v, mine) {
  const decision = $("decision");
  decision.dataset.live = String(Boolean(v.live));
  decision.dataset.match = v.result && "match" in v.result ? String(v.result.match) : "";
  const matched = v.result && (v.flow === "enroll" || v.result.match);
  if (v.live && matched) {
    setText(decision, v.flow === "enroll" ? "result.enrolled" : "result.verified");
    setText($("decision-detail"), v.flow === "enroll" ? "result.enrolled_detail" : "result.verified_detail");
    $("failure").hidden = true;
    $("btn-retry").hidden = true;
    show("result");
    report("passed");
    return;
  }
  const reasons = v.live ? [{ code: "no_match" }] : v.reasons || [];
  const missing = (v.actions || []).filter((a) => !a.found).map((a) => a.action);
  showFailure(reasons.length ? reasons : [{ code: "unknown" }], mine, missing, v);
}

function showFailure(reasons, mine, missing, verdict = null) {
  const decision = $("decision");
  if (!verdict) {
    decision.dataset.live = "false";
    decision.dataset.match = "";
  }
  setText(decision, "result.failed");
  setText($("decision-detail"), "result.failed_detail");
  const items = explain(reasons, missing);
  const first = items[0];
  const where = whereKey(first, mine);
  $("fail-step").hidden = where === null;
  $("fail-step").dataset.step = first.at === "action" ? first.action || "" : first.at || "";
  if (where !== null) setText($("fail-step"), "result.failed_at", { step: "@" + where });
  $("fail-what").dataset.code = first.code;
  setText($("fail-what"), "reason." + first.msg);
  setText($("fail-todo"), "reason." + first.msg + ".todo");
  const ul = $("reasons");
  ul.textContent = "";
  for (const item of items.slice(0, 4)) { // the first and at most three more
    const li = document.createElement("li");
    li.dataset.code = item.code;
    const at = item === first ? null : whereKey(item, mine);
    if (at) setText(li, "result.reason_at", { step: "@" + at, what: "@reason." + item.msg });
    else if (item !== first) setText(li, "reason." + item.msg);
    else li.hidden = true;
    ul.appendChild(li);
  }
  // an enrolment link is spent by its first check; a verification link can be used again
  const spent = info && info.flow === "enroll" && (verdict !== null || first.code === "capture_link_used");
  const retry = !spent && !["invalid_capture_token", "capture_link_used", "consent_required"].includes(first.code);
  if (spent) setText($("fail-next"), "result.new_link");
  else $("fail-next").textContent = "";
  $("btn-retry").hidden = !retry;
  $("failure").hidden = false;
  show("result");
  report(verdict ? "failed" : "error", reasons);
}

function whereKey(item, mine) {
  if (item.at === "action") return item.action ? "action." + item.action : "step.an_action";
  if (item.at === "colours") return "step.colours";
  if (item.at === "whole") return "step.whole";
  if (item.at === "current") return stepKey(mine.current);
  return null;
}

on("btn-retry", async () => {
  $("camera-note").hidden = true;
  show("camera");
});

start().catch(() => fail("unknown"));
