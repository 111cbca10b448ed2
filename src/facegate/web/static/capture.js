// facegate capture page: consent, camera, challenge prompts, recording, upload, decision.
// Nothing of the face is kept: the recording lives in memory until it is uploaded, then the
// camera is stopped and every reference to the recording is dropped.
"use strict";

const token = new URLSearchParams(location.search).get("t") || "";
const $ = (id) => document.getElementById(id);
const STEPS = ["error", "consent", "declined", "camera", "record", "upload", "result"];
const PROMPTS = {
  blink: "Blink your eyes",
  turn_left: "Turn your head to your left, then back",
  turn_right: "Turn your head to your right, then back",
  look_up: "Look up, then back",
  look_down: "Look down, then back",
  open_mouth: "Open your mouth, then close it",
};
const PLAIN = {
  action_missing: "We did not see one of the movements we asked for, in the order we asked.",
  face_missing: "Your face left the picture for a moment.",
  multiple_faces: "Another face was in the picture. Make sure you are alone in view.",
  discontinuity: "The video jumped, as if it had been cut.",
  identity_changed: "It did not look like the same person throughout.",
  identity_unverified: "We could not see your face clearly enough.",
  no_face: "We could not find a face. Check the light and your position.",
};
const NEUTRAL_MS = 1000, ACTION_MS = 1300;
let info = null, stream = null;

function show(step) {
  for (const s of STEPS) $("step-" + s).hidden = s !== step;
  const h = document.querySelector("#step-" + step + " h2");
  if (h) h.focus();
}

async function api(path, options = {}) {
  const headers = Object.assign({ "X-Capture-Token": token }, options.headers || {});
  const res = await fetch(path, Object.assign({}, options, { headers }));
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(body.detail || res.statusText), { problem: body, status: res.status });
  return body;
}

function fail(message) {
  $("error-text").textContent = message;
  show("error");
}

async function start() {
  if (!token) return fail("Open this page from the link the service gave you.");
  try {
    info = await api("/v1/capture/info");
  } catch (e) {
    return fail("The link is not valid or has expired. Ask the service for a new one.");
  }
  $("title").textContent = info.flow === "enroll" ? "Set up your face check" : "Confirm it is you";
  $("camera-alternative").textContent = info.non_face_alternative;
  $("flash-alternative").textContent = info.non_face_alternative;
  if (info.consent_given) return show("camera");
  $("consent-text").textContent = info.consent_text;
  $("consent-version").textContent = info.consent_text_version;
  show("consent");
}

$("btn-agree").addEventListener("click", async () => {
  try {
    await api("/v1/capture/consent", { method: "POST" });
    show("camera");
  } catch (e) { fail(e.message); }
});

$("btn-decline").addEventListener("click", async () => {
  try {
    const r = await api("/v1/capture/decline", { method: "POST" });
    $("alternative-text").textContent = r.non_face_alternative;
  } catch (e) {
    $("alternative-text").textContent = info ? info.non_face_alternative : "";
  }
  show("declined");
});

function cameraError(err) {
  const denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
  $("camera-error-text").textContent = denied
    ? "Camera access was blocked. Allow the camera for this site in your browser's address bar or settings, then try again."
    : "No camera could be started. Check that a camera is connected and not used by another app.";
  $("camera-error").hidden = false;
  $("btn-camera-retry").focus();
}

async function openCamera() {
  $("camera-error").hidden = true;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480, facingMode: "user" }, audio: false });
  } catch (err) {
    return cameraError(err);
  }
  let challenge;
  try {
    challenge = await api("/v1/capture/challenge", { method: "POST" });
  } catch (e) {
    stopCamera();
    return fail(e.message);
  }
  record(challenge);
}
$("btn-start").addEventListener("click", openCamera);
$("btn-camera-retry").addEventListener("click", openCamera);

function stopCamera() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  $("preview").srcObject = null;
}

function playFlash(sequence) {
  const el = $("flash");
  let at = 0;
  for (const [colour, ms] of sequence) {
    setTimeout(() => { el.hidden = false; el.style.background = colour; }, at);
    at += ms;
  }
  setTimeout(() => { el.hidden = true; }, at);
}

function record(challenge) {
  show("record");
  $("preview").srcObject = stream;
  const list = $("steps");
  list.textContent = "";
  const items = challenge.actions.map((a) => {
    const li = document.createElement("li");
    li.textContent = PROMPTS[a] || a;
    list.appendChild(li);
    return li;
  });
  // the colour flash plays first, over the neutral phase; the actions come after it
  const flashMs = challenge.flash ? challenge.flash.reduce((sum, step) => sum + step[1], 0) : 0;
  const neutral = Math.max(NEUTRAL_MS, flashMs + 400);
  const total = neutral + ACTION_MS * challenge.actions.length;
  const type = MediaRecorder.isTypeSupported("video/webm;codecs=vp8") ? "video/webm;codecs=vp8" : "video/webm";
  let chunks = [];
  const recorder = new MediaRecorder(stream, { mimeType: type, videoBitsPerSecond: 2_500_000 });
  recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  recorder.onstop = async () => {
    stopCamera();
    let blob = new Blob(chunks, { type: "video/webm" });
    chunks = [];
    const form = new FormData();
    form.append("token", challenge.token);
    form.append("video", blob, "capture.webm");
    blob = null;
    show("upload");
    try {
      showResult(await api("/v1/capture/submit", { method: "POST", body: form }));
    } catch (e) {
      showProblem(e);
    }
  };
  recorder.start(250);
  if (challenge.flash) playFlash(challenge.flash);
  $("prompt").textContent = "Look at the camera";
  const started = performance.now();
  const tick = setInterval(() => {
    const t = performance.now() - started;
    const pct = Math.min(100, Math.round((100 * t) / total));
    $("progress-bar").style.width = pct + "%";
    document.querySelector(".progress").setAttribute("aria-valuenow", String(pct));
    const k = t < neutral ? -1 : Math.floor((t - neutral) / ACTION_MS);
    items.forEach((li, i) => { li.className = i < k ? "done" : i === k ? "current" : ""; });
    if (k >= 0 && k < items.length) $("prompt").textContent = PROMPTS[challenge.actions[k]] || challenge.actions[k];
    if (t >= total) {
      clearInterval(tick);
      $("prompt").textContent = "Done";
      recorder.stop();
    }
  }, 100);
}

function showResult(r) {
  const ok = r.live && r.result && (r.flow === "enroll" || r.result.match);
  const decision = $("decision");
  decision.dataset.live = String(Boolean(r.live));
  decision.dataset.match = r.result && "match" in r.result ? String(r.result.match) : "";
  if (ok) {
    decision.textContent = r.flow === "enroll" ? "You are set up" : "It is you";
    $("decision-detail").textContent = r.flow === "enroll"
      ? "Your face check is ready. We kept a protected template, not your video."
      : "Thank you. Your identity is confirmed.";
  } else if (r.live) {
    decision.textContent = "We could not confirm it is you";
    $("decision-detail").textContent = "The face did not match the one we have on file. " + (info ? info.non_face_alternative : "");
  } else {
    decision.textContent = "That did not work";
    $("decision-detail").textContent = "Here is what went wrong:";
  }
  const ul = $("reasons");
  ul.textContent = "";
  const seen = new Set();
  for (const reason of r.reasons || []) {
    const text = PLAIN[reason.code] || reason.message;
    if (seen.has(text)) continue;
    seen.add(text);
    const li = document.createElement("li");
    li.textContent = text;
    li.dataset.code = reason.code;
    ul.appendChild(li);
  }
  $("btn-retry").hidden = Boolean(ok);
  show("result");
}

function showProblem(e) {
  const decision = $("decision");
  decision.dataset.live = "false";
  decision.textContent = "That did not work";
  $("decision-detail").textContent = (e.problem && e.problem.detail) || e.message;
  $("reasons").textContent = "";
  $("btn-retry").hidden = false;
  show("result");
}

$("btn-retry").addEventListener("click", () => show("camera"));
start();
