// One streamed check over /v1/liveness/stream (docs/liveness-protocol.md): the camera is drawn
// onto a small canvas ~15 times a second, each picture sent as a JPEG behind its capture time
// (8 bytes, little-endian float64, performance.now()). Steps arrive one at a time; after
// `steps_done` a short tail of frames is sent, then `end`, and the verdict comes back.
// Frames live in memory only, one at a time.

const WIDTH = 480;
const QUALITY = 0.8;
const TAIL_MS = 300;
const MIN_GAP_MS = 40; // the server refuses frames closer than 25 ms
const MAX_BUFFERED = 1 << 20;

// The JPEG of a frame, encoded now, behind 8 bytes left for its capture time. Not toBlob:
// Chromium encodes a toBlob in an idle period, and a busy page, or a relying party's frame,
// may get none for a second (the encoding is then forced after 1 s); the server rightly reads
// a frame sent that late as a paused stream. A 480 px JPEG takes a few ms here.
function frameBytes(dataUrl) {
  const text = atob(dataUrl.slice(dataUrl.indexOf(",") + 1));
  const buf = new Uint8Array(8 + text.length);
  for (let i = 0; i < text.length; i++) buf[8 + i] = text.charCodeAt(i);
  return buf;
}

export class StreamSession {
  constructor(video, token, handlers) {
    this.video = video;
    this.token = token;
    this.on = handlers; // ready, step, feedback, hint, done
    this.stopped = false;
    this.cancelled = false;
    this.bytes = 0;
    this.frames = 0;
    this.last = null;
  }

  run() {
    return new Promise((resolve) => {
      const url = new URL("../v1/liveness/stream", import.meta.url); // under any path prefix
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(url.href);
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      let settled = false;
      const finish = (outcome) => {
        if (settled) return;
        settled = true;
        this.stop();
        resolve(outcome);
      };
      ws.onopen = () => ws.send(JSON.stringify({ type: "start", capture_token: this.token }));
      ws.onmessage = (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch { return; }
        if (msg.type === "ready") {
          this.on.ready(msg);
          this.frameLoop(msg);
        } else if (msg.type === "step") {
          this.on.step(msg);
        } else if (msg.type === "feedback") {
          this.on.feedback(msg.code);
        } else if (msg.type === "steps_done") {
          this.on.done();
          setTimeout(() => this.end(), TAIL_MS);
        } else if (msg.type === "verdict") {
          finish({ verdict: msg });
        } else if (msg.type === "error") {
          finish({ error: msg.code });
        }
      };
      ws.onclose = () => finish({ error: this.cancelled ? "cancelled" : "stream_disconnected" });
      ws.onerror = () => {};
    });
  }

  frameLoop(ready) {
    const v = this.video;
    const maxW = Math.min(WIDTH, ready.max_width || WIDTH);
    const scale = Math.min(maxW / v.videoWidth, (ready.max_height || 640) / v.videoHeight, 1);
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(v.videoWidth * scale);
    canvas.height = Math.round(v.videoHeight * scale);
    const ctx = canvas.getContext("2d");
    const thumb = document.createElement("canvas");
    thumb.width = 32;
    thumb.height = 24;
    const tctx = thumb.getContext("2d", { willReadFrequently: true });
    const interval = 1000 / (ready.fps || 15);
    const t0 = performance.now();
    let k = 0, previous = null;
    const tick = () => {
      if (this.stopped) return;
      const now = performance.now();
      const ws = this.ws;
      if (ws.readyState === WebSocket.OPEN && ws.bufferedAmount < MAX_BUFFERED && (this.last === null || now - this.last >= MIN_GAP_MS)) {
        ctx.drawImage(v, 0, 0, canvas.width, canvas.height);
        const stamp = performance.now();
        this.last = stamp;
        if (k % 5 === 0) previous = this.localHint(tctx, canvas, previous);
        const buf = frameBytes(canvas.toDataURL("image/jpeg", QUALITY));
        new DataView(buf.buffer).setFloat64(0, stamp, true);
        ws.send(buf);
        this.bytes += buf.byteLength;
        this.frames += 1;
      }
      k += 1;
      this.timer = setTimeout(tick, Math.max(0, t0 + k * interval - performance.now()));
    };
    tick();
  }

  // too dark / hold still, measured here on a 32x24 copy (the server judges faces only)
  localHint(tctx, canvas, previous) {
    tctx.drawImage(canvas, 0, 0, 32, 24);
    const px = tctx.getImageData(0, 0, 32, 24).data;
    const luma = new Float32Array(32 * 24);
    let sum = 0;
    for (let i = 0; i < luma.length; i++) {
      luma[i] = 0.299 * px[4 * i] + 0.587 * px[4 * i + 1] + 0.114 * px[4 * i + 2];
      sum += luma[i];
    }
    let motion = 0;
    if (previous) {
      for (let i = 0; i < luma.length; i++) motion += Math.abs(luma[i] - previous[i]);
      motion /= luma.length;
    }
    const mean = sum / luma.length;
    this.on.hint(mean < 45 ? "too_dark" : motion > 18 ? "hold_still" : null);
    return luma;
  }

  end() {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "end" }));
  }

  cancel() {
    this.cancelled = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "cancel" }));
    this.stop();
    if (this.ws) this.ws.close();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  stats() {
    return { frames: this.frames, bytes: this.bytes };
  }
}
