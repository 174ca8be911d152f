// Review together, the page's side (protocol: docs/review.md, server: signaling/review.py).
//
// The presenter's changes are coalesced to one `review_view` per animation frame (only what
// changed since the last one is sent); followers apply each view as it comes. Measurements go
// as a whole set (`review_annotations`), at most every 100 ms. A late joiner gets the current
// state in the ack of `review_join`.

export class ReviewSync {
  constructor(socket, { onState = () => {}, onView = () => {}, onAnnotations = () => {}, onError = () => {} } = {}) {
    this.socket = socket;
    this.onError = onError;
    this.state = null;
    this.me = null;
    this.pending = null;
    this.last = {};
    this.frame = 0;
    this.annotationTimer = 0;
    socket.on("review_state", (state) => {
      this.state = state;
      onState(state);
    });
    socket.on("review_view", (message) => {
      if (this.state) this.state.view = { ...this.state.view, ...message.view };
      onView(message);
    });
    socket.on("review_annotations", (message) => {
      if (this.state) this.state.annotations = message.annotations;
      onAnnotations(message);
    });
  }

  call(event, data = {}) {
    return new Promise((resolve, reject) => {
      this.socket.timeout(10000).emit(event, data, (err, ack) => {
        if (err) reject(Object.assign(new Error("timeout"), { code: "network_error" }));
        else if (!ack?.ok) reject(Object.assign(new Error(ack?.error?.message ?? "error"), { code: ack?.error?.code ?? "internal_error" }));
        else resolve(ack);
      });
    });
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
    this.socket.emit("review_view", message, (ack) => {
      if (!ack?.ok) this.onError(ack?.error?.code ?? "internal_error");
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
