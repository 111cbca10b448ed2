/*! facegate embed.js: a relying party's page opens a facegate capture link in a frame and
 * hears its outcome (docs/embedding.md). No dependencies, no build step, the same bytes for
 * every tenant, so a page may pin them with integrity="sha384-...".
 *
 *   FacegateCapture.open({link, container, onResult}) -> {frame, result, close()}
 *   <facegate-capture link="https://facegate.example/?t=..."> fires "facegate-result"
 *
 * The outcome is a hint for the page's UI, never proof: the relying party's server reads the
 * link's state with GET /v1/capture-links/{id}. Messages count only when they come from the
 * link's own origin and from this frame's window, and carry only documented fields.
 */
(function () {
  "use strict";
  var TYPE = "facegate:capture";
  var STATUSES = ["passed", "failed", "declined", "error"];
  var FLOWS = ["enroll", "verify"];
  var script = document.currentScript;
  var base = script && script.src ? script.src : location.href; // a relative link: facegate's

  function outcomeOf(data) {
    if (!data || typeof data !== "object" || data.type !== TYPE || data.version !== 1) return null;
    if (STATUSES.indexOf(data.status) < 0) return null;
    return {
      link_id: typeof data.link_id === "string" ? data.link_id : "",
      flow: FLOWS.indexOf(data.flow) >= 0 ? data.flow : null,
      status: data.status,
      reasons: Array.isArray(data.reasons) ? data.reasons.slice(0, 8).map(String) : [],
    };
  }

  function open(options) {
    if (!options || !options.link) throw new Error("facegate: open() needs a link");
    var link = new URL(options.link, base);
    if (link.protocol !== "https:" && link.protocol !== "http:") {
      throw new Error("facegate: the link must be an http(s) URL");
    }
    // where the page may post its outcome: the server checks it against the tenant's list
    link.searchParams.set("origin", location.origin);
    var frame = document.createElement("iframe");
    frame.src = link.href;
    frame.allow = "camera"; // delegated to this frame's origin only
    // scripts, and its own origin (its API calls and WebSocket); no forms, popups, navigation
    // of this page, downloads or modals
    frame.setAttribute("sandbox", "allow-scripts allow-same-origin");
    frame.referrerPolicy = "no-referrer";
    frame.title = options.title || "Face check";
    frame.style.border = "0";
    frame.style.display = "block";
    frame.style.width = "100%";
    frame.style.height = options.height || "680px";
    var expected = link.origin;
    var settle;
    var result = new Promise(function (resolve) { settle = resolve; });
    function listener(event) {
      if (event.origin !== expected || event.source !== frame.contentWindow) return;
      var outcome = outcomeOf(event.data);
      if (!outcome) return;
      settle(outcome); // the first outcome; onResult hears every one (a retried verification)
      if (typeof options.onResult === "function") options.onResult(outcome);
    }
    window.addEventListener("message", listener);
    (options.container || document.body).appendChild(frame);
    return {
      frame: frame,
      result: result,
      close: function () {
        window.removeEventListener("message", listener);
        if (frame.parentNode) frame.parentNode.removeChild(frame);
      },
    };
  }

  window.FacegateCapture = Object.freeze({ open: open, version: 1 });

  if (!window.customElements || window.customElements.get("facegate-capture")) return;

  // <facegate-capture link="..." height="600px" title="..."> in a shadow root; its outcome
  // arrives as a "facegate-result" event (detail: the outcome), bubbling and composed.
  class FacegateCaptureElement extends HTMLElement {
    static get observedAttributes() {
      return ["link"];
    }
    connectedCallback() {
      this.openFrame();
    }
    disconnectedCallback() {
      this.closeFrame();
    }
    attributeChangedCallback() {
      if (!this.isConnected) return;
      this.closeFrame();
      this.openFrame();
    }
    openFrame() {
      var link = this.getAttribute("link");
      if (!link || this.handle) return;
      var element = this;
      this.handle = open({
        link: link,
        container: this.shadowRoot || this.attachShadow({ mode: "open" }),
        height: this.getAttribute("height") || undefined,
        title: this.getAttribute("title") || undefined,
        onResult: function (outcome) {
          element.dispatchEvent(
            new CustomEvent("facegate-result", { detail: outcome, bubbles: true, composed: true })
          );
        },
      });
    }
    closeFrame() {
      if (this.handle) this.handle.close();
      this.handle = null;
    }
  }
  window.customElements.define("facegate-capture", FacegateCaptureElement);
})();
