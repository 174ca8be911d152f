// Review together, the page's side (protocol: docs/review.md, server: signaling/review.py).
//
// The presenter's changes are coalesced to one `review_view` per animation frame (only what
// changed since the last one is sent); followers apply each view as it comes. Measurements go
// as a whole set (`review_annotations`), at most every 100 ms. A late joiner gets the current
// state in the ack of `review_join`. It speaks through the room's signaling client
// (signaling.js), as the room page does.

export class ReviewSync {
  /** `client`: a SignalingClient of the room (its join token). */
  constructor(client, { onState = () => {}, onView = () => {}, onAnnotations = () => {}, onError = () => {} } = {}) {
    this.client = client;
    this.onError = onError;
    this.state = null;
    this.me = null;
    this.pending = null;
    this.last = {};
    this.frame = 0;
    this.annotationTimer = 0;
    client.on("review_state", (state) => {
      this.state = state;
      onState(state);
    });
    client.on("review_view", (message) => {
      if (this.state) this.state.view = { ...this.state.view, ...message.view };
      onView(message);
    });
    client.on("review_annotations", (message) => {
      if (this.state) this.state.annotations = message.annotations;
      onAnnotations(message);
    });
  }

  /** Send `event` and resolve with its ack; reject with an error whose `code` is the server's
   * (`network_error` when no ack came or the socket is down). */
  async call(event, data = {}) {
    try {
      return await this.client.request(event, data);
    } catch (err) {
      throw Object.assign(err, { code: err.code === "timeout" ? "network_error" : err.code || "internal_error" });
    }
  }

  get presenting() {
    return Boolean(this.state && this.me && this.state.presenter === this.me);
  }

  async join(me) {
    this.me = me;
    const ack = await this.call("review_join");
    this.state = ack.state;
    return ack.state;
  }

  async share(subject) {
    const ack = await this.call("review_share", subject);
    this.state = ack.state;
    this.last = {};
    return ack.state;
  }

  async stop() {
    const ack = await this.call("review_stop");
    this.state = ack.state;
    return ack.state;
  }

  async handover(to) {
    const ack = await this.call("review_handover", { to });
    this.state = ack.state;
    return ack.state;
  }

  /** The presenter's view: sent at once (only the fields that changed), then at most once per
   * animation frame while changes keep coming (a drag sends one view per frame, not per event). */
  sendView(view) {
    if (!this.presenting || !view) return;
    this.pending = { ...(this.pending ?? {}), ...view };
    if (this.frame) return;
    this.flush();
    this.frame = window.requestAnimationFrame(() => {
      this.frame = 0;
      if (this.pending) this.flush();
    });
  }

  flush() {
    const next = this.pending;
    this.pending = null;
    const changed = {};
    for (const [key, value] of Object.entries(next)) {
      if (JSON.stringify(this.last[key]) !== JSON.stringify(value)) changed[key] = value;
    }
    if (!Object.keys(changed).length) return;
    Object.assign(this.last, changed);
    const message = { view: changed, sent_at: performance.timeOrigin + performance.now() };
    // a view lost while the socket is down is not an error: the next join's state carries it
    this.client.request("review_view", message).catch((err) => {
      if (this.client.connected) this.onError(err.code === "timeout" ? "network_error" : err.code);
    });
  }

  sendAnnotations(list) {
    if (!this.presenting) return;
    window.clearTimeout(this.annotationTimer);
    this.annotationTimer = window.setTimeout(() => {
      this.call("review_annotations", { annotations: list }).catch((err) => this.onError(err.code));
    }, 100);
  }
}
