// The one table from a code (a verdict's reason, a refusal, a camera problem, a failed match)
// to what the person reads: `reason.<msg>` says what went wrong, `reason.<msg>.todo` what to do
// differently (both in i18n/<lang>.json); `at` says which step it was: an action (named in the
// reason), the colour screens, the whole check, or the step on screen when the stream ended.
const R = (msg, at = null) => ({ msg, at });
export const REASONS = {
  action_missing: R("action_missing", "action"),
  action_out_of_step: R("action_late", "action"),
  cue_planarity: R("flat", "whole"),
  cue_flash_correlation: R("colours", "colours"),
  cue_flash_steps: R("colours", "colours"),
  cue_flash_lag_ms: R("colours", "colours"),
  cue_flash_face_vs_background: R("colours_background", "colours"),
  no_face: R("no_face", "whole"),
  face_missing: R("face_left", "whole"),
  multiple_faces: R("multiple_faces", "whole"),
  discontinuity: R("jump", "whole"),
  identity_changed: R("identity_changed", "whole"),
  identity_unverified: R("unclear", "whole"),
  stream_jitter: R("connection", "current"),
  stream_late: R("connection", "current"),
  stream_paused: R("connection", "current"),
  stream_bursty: R("connection", "current"),
  stream_reordered: R("connection", "current"),
  stream_silent: R("connection", "current"),
  stream_disconnected: R("connection", "current"),
  stream_too_large: R("device", "current"),
  stream_too_long: R("device", "current"),
  frame_too_large: R("device", "current"),
  frame_malformed: R("device", "current"),
  bad_message: R("device", "current"),
  stream_incomplete: R("incomplete", "current"),
  server_busy: R("server", "current"),
  analysis_failed: R("server", "current"),
  cancelled: R("cancelled"),
  no_match: R("no_match"),
  consent_required: R("consent"),
  capture_link_used: R("link_used"),
  subject_locked: R("locked"),
  rate_limited: R("rate_limited"),
  invalid_capture_token: R("link_invalid"),
  unauthenticated: R("link_invalid"),
  not_found: R("link_invalid"),
  liveness_disabled: R("unavailable"),
  forbidden: R("unavailable"),
  chosen_actions_not_allowed: R("unavailable"),
  bad_start: R("unavailable"),
  bad_request: R("unavailable"),
  invalid_actions: R("unavailable"),
  subject_required: R("unavailable"),
  camera_denied: R("camera_denied"),
  camera_missing: R("camera_missing"),
};
const UNKNOWN = R("unknown", "current");

// Which code to explain first when a verdict carries several.
const ORDER = ["stream", "frame", "no_face", "multiple_faces", "face_missing", "action", "cue_planarity",
  "cue_flash", "discontinuity", "identity"];

function rank(code) {
  const i = ORDER.findIndex((prefix) => code.startsWith(prefix));
  return i < 0 ? ORDER.length : i;
}

export function entry(code) {
  return REASONS[code] || UNKNOWN;
}

// [{code, msg, at, action}] in the order to show, one per message.
export function explain(reasons, missingActions = []) {
  const sorted = [...reasons].sort((a, b) => rank(a.code) - rank(b.code));
  const out = [];
  const seen = new Set();
  for (const reason of sorted) {
    const e = entry(reason.code);
    const quoted = /'([a-z_]+)'/.exec(reason.message || "");
    const action = e.at === "action" ? (quoted ? quoted[1] : missingActions[0] || null) : null;
    const key = e.msg + ":" + (action || "");
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ code: reason.code, msg: e.msg, at: e.at, action });
  }
  return out;
}
