// Chat panel of the consult room (docs/chat.md): messages, input, image picker with preview and
// an upload progress bar, unread marker, large-text mode (R43). Simplified Chinese by default,
// English through the room's toggle (i18n.js).
//
// History: the panel keeps every message by its room sequence number `seq`. After each join
// (first entry, reconnect) it asks `chat_history` for everything after the last seq it holds
// without a gap, page by page; live `chat_message` events are kept by seq too, so an overlap is
// never shown twice, and a gap (a seq beyond the next one) triggers another history request.
//
// For tests, `window.__chat` exposes the messages, the last seq and the unread count.

import { addStrings, hasKey, onLanguageChange, t } from "./i18n.js";

const MAX_TEXT = 2000;
const IMAGE_TYPES = "image/jpeg,image/png,image/webp";
const LARGE_TEXT_KEY = "teleconsult.chat_large_text";

addStrings({
  "zh-CN": {
    "chat.title": "文字交流",
    "chat.collapse": "收起",
    "chat.expand": "展开",
    "chat.large_text_on": "大字模式",
    "chat.large_text_off": "标准字号",
    "chat.unread": "{count} 条新消息",
    "chat.jump": "查看新消息",
    "chat.empty": "还没有消息。可以在下面输入文字或发送图片。",
    "chat.input": "输入消息",
    "chat.input_placeholder": "在这里输入文字，按“发送”",
    "chat.send": "发送",
    "chat.pick_image": "选择图片",
    "chat.send_image": "发送图片",
    "chat.cancel": "取消",
    "chat.preview": "待发送的图片预览",
    "chat.uploading": "正在上传图片 {percent}%",
    "chat.me": "我",
    "chat.retracted": "此消息已撤回",
    "chat.retract": "撤回",
    "chat.retraction": "撤回了一条消息",
    "chat.image_alt": "聊天图片",
    "chat.open_image": "查看大图",
    "chat.close_image": "关闭",
    "chat.text_only": "纯文字问诊：不使用摄像头和麦克风",
    "chat.error.sensitive_word": "消息未发送：其中含有不允许使用的词语，请修改后再发送。",
    "chat.error.message_empty": "消息是空的。",
    "chat.error.message_too_long": "消息太长了（最多 2000 个字）。",
    "chat.error.message_invalid_characters": "消息里有无法发送的字符。",
    "chat.error.image_type_unsupported": "只能发送 JPEG、PNG 或 WebP 图片。",
    "chat.error.image_too_large": "图片文件太大（最多 10 MB）。",
    "chat.error.payload_too_large": "图片文件太大（最多 10 MB）。",
    "chat.error.image_too_many_pixels": "图片尺寸太大。",
    "chat.error.image_unreadable": "图片已损坏，无法读取。",
    "chat.error.upload_failed": "图片上传失败，请重试。",
    "chat.error.not_admitted": "医生还没有让您进入诊室，暂时不能发送消息。",
    "chat.error.visit_closed": "本次问诊已结束，不能再发送消息。",
    "chat.error.unknown": "消息发送失败，请重试。",
  },
  en: {
    "chat.title": "Chat",
    "chat.collapse": "Hide",
    "chat.expand": "Show",
    "chat.large_text_on": "Large text",
    "chat.large_text_off": "Normal text",
    "chat.unread": "{count} new",
    "chat.jump": "Show new messages",
    "chat.empty": "No messages yet. Type below or send a picture.",
    "chat.input": "Message",
    "chat.input_placeholder": "Type here, then press Send",
    "chat.send": "Send",
    "chat.pick_image": "Choose picture",
    "chat.send_image": "Send picture",
    "chat.cancel": "Cancel",
    "chat.preview": "Preview of the picture to send",
    "chat.uploading": "Uploading picture {percent}%",
    "chat.me": "Me",
    "chat.retracted": "This message was retracted",
    "chat.retract": "Retract",
    "chat.retraction": "retracted a message",
    "chat.image_alt": "Chat picture",
    "chat.open_image": "Open picture",
    "chat.close_image": "Close",
    "chat.text_only": "Text visit: no camera or microphone",
    "chat.error.sensitive_word":
      "Not sent: the message contains a word that may not be used. Please rephrase it.",
    "chat.error.message_empty": "The message is empty.",
    "chat.error.message_too_long": "The message is too long (2000 characters at most).",
    "chat.error.message_invalid_characters": "The message has characters that cannot be sent.",
    "chat.error.image_type_unsupported": "Only JPEG, PNG and WebP pictures can be sent.",
    "chat.error.image_too_large": "The picture file is too large (10 MB at most).",
    "chat.error.payload_too_large": "The picture file is too large (10 MB at most).",
    "chat.error.image_too_many_pixels": "The picture is too large.",
    "chat.error.image_unreadable": "The picture is damaged and cannot be read.",
    "chat.error.upload_failed": "The picture could not be uploaded; please try again.",
    "chat.error.not_admitted": "The doctor has not admitted you yet; you cannot send messages.",
    "chat.error.visit_closed": "The visit is over; messages can no longer be sent.",
    "chat.error.unknown": "The message could not be sent; please try again.",
  },
});

function make(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function errorText(code) {
  // the chat's own wording where it has one, else the one table's (/errors.js)
  if (hasKey(`chat.error.${code}`)) return t(`chat.error.${code}`);
  return hasKey(`error.${code}`) ? t(`error.${code}`) : t("chat.error.unknown");
}

/**
 * The chat panel. `request(event, payload)` sends a signaling event and resolves with its ack
 * (throwing an error with `.code` when refused); `token` (the room link's join token) authenticates
 * the image routes of the REST API, which are the room's (its id comes with the join ack).
 */
export class ChatPanel {
  constructor(root, { request, token, textOnly = false }) {
    this.request = request;
    this.roomId = null; // the room's id, from the join ack (a visit's or a consultation's room)
    this.token = token;
    this.messages = new Map(); // seq -> message
    this.retracted = new Set(); // ids of retracted messages
    this.self = null;
    this.unread = 0;
    this.collapsed = false;
    this.catchingUp = null;
    this.pendingFile = null;
    this.thumbUrls = new Map(); // image id -> Promise of an object URL
    this.state = { messages: [], lastSeq: 0, unread: 0, received: [], errors: [], uploadProgress: null };
    window.__chat = this.state;
    this.build(root, textOnly);
    this.setLargeText(window.localStorage?.getItem(LARGE_TEXT_KEY) === "1");
    onLanguageChange(() => this.renderAll());
    this.renderAll();
  }

  // --- DOM -------------------------------------------------------------------------------------

  build(root, textOnly) {
    this.title = make("h2", { className: "chat-title", id: "chat-title" });
    this.badge = make("span", { className: "chat-badge", id: "chat-unread", hidden: true });
    this.largeButton = make("button", { type: "button", className: "chat-btn", id: "chat-large" });
    this.collapseButton = make("button", {
      type: "button",
      className: "chat-btn",
      id: "chat-collapse",
      "aria-controls": "chat-body",
    });
    const header = make(
      "div",
      { className: "chat-header" },
      make("div", { className: "chat-heading" }, this.title, this.badge),
      make("div", { className: "chat-tools" }, this.largeButton, this.collapseButton),
    );
    this.textOnlyNote = make("p", { className: "chat-text-only", hidden: !textOnly });
    this.list = make("ol", {
      className: "chat-list",
      id: "chat-list",
      "aria-live": "polite",
      "aria-labelledby": "chat-title",
      tabIndex: 0,
    });
    this.empty = make("p", { className: "chat-empty", id: "chat-empty" });
    this.jump = make("button", { type: "button", className: "chat-jump", id: "chat-jump", hidden: true });
    this.notice = make("p", { className: "chat-notice", id: "chat-notice", role: "alert", hidden: true });

    this.previewImg = make("img", { className: "chat-preview-img", id: "chat-preview-img" });
    this.progress = make("progress", { id: "chat-progress", max: 100, value: 0, hidden: true });
    this.progressText = make("span", { className: "chat-progress-text", id: "chat-progress-text" });
    this.sendImageButton = make("button", {
      type: "button",
      className: "chat-btn chat-btn-primary",
      id: "chat-send-image",
    });
    this.cancelImageButton = make("button", { type: "button", className: "chat-btn", id: "chat-cancel-image" });
    this.preview = make(
      "div",
      { className: "chat-preview", id: "chat-preview", hidden: true },
      this.previewImg,
      make("div", { className: "chat-preview-actions" }, this.sendImageButton, this.cancelImageButton),
      this.progress,
      this.progressText,
    );

    this.input = make("textarea", {
      id: "chat-input",
      className: "chat-input",
      rows: 2,
      maxLength: MAX_TEXT,
    });
    this.fileInput = make("input", {
      type: "file",
      id: "chat-file",
      accept: IMAGE_TYPES,
      className: "chat-file",
    });
    this.pickLabel = make("label", { htmlFor: "chat-file", className: "chat-btn chat-pick", id: "chat-pick" });
    this.sendButton = make("button", { type: "submit", className: "chat-btn chat-btn-primary", id: "chat-send" });
    this.form = make(
      "form",
      { className: "chat-form", id: "chat-form" },
      this.input,
      make("div", { className: "chat-form-actions" }, this.fileInput, this.pickLabel, this.sendButton),
    );
    this.body = make(
      "div",
      { className: "chat-body", id: "chat-body" },
      this.textOnlyNote,
      this.list,
      this.empty,
      this.jump,
      this.notice,
      this.preview,
      this.form,
    );
    this.viewer = make("dialog", { className: "chat-viewer", id: "chat-viewer" });
    root.replaceChildren(header, this.body, this.viewer);
    this.root = root;

    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendText();
    });
    this.input.addEventListener("keydown", (event) => {
      // Enter sends; Shift+Enter breaks the line; never while an input method is composing.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.sendText();
      }
    });
    this.fileInput.addEventListener("change", () => this.pick());
    this.sendImageButton.addEventListener("click", () => this.sendImage());
    this.cancelImageButton.addEventListener("click", () => this.clearPick());
    this.collapseButton.addEventListener("click", () => this.setCollapsed(!this.collapsed));
    this.largeButton.addEventListener("click", () => this.setLargeText(!this.largeText));
    this.list.addEventListener("scroll", () => {
      if (this.atBottom()) this.markRead();
    });
    this.jump.addEventListener("click", () => {
      this.scrollToEnd();
      this.markRead();
    });
  }

  renderAll() {
    this.title.textContent = t("chat.title");
    this.largeButton.textContent = t(this.largeText ? "chat.large_text_off" : "chat.large_text_on");
    this.largeButton.setAttribute("aria-pressed", String(Boolean(this.largeText)));
    this.collapseButton.textContent = t(this.collapsed ? "chat.expand" : "chat.collapse");
    this.collapseButton.setAttribute("aria-expanded", String(!this.collapsed));
    this.textOnlyNote.textContent = t("chat.text_only");
    this.empty.textContent = t("chat.empty");
    this.jump.textContent = t("chat.jump");
    this.input.placeholder = t("chat.input_placeholder");
    this.input.setAttribute("aria-label", t("chat.input"));
    this.pickLabel.textContent = t("chat.pick_image");
    this.sendButton.textContent = t("chat.send");
    this.sendImageButton.textContent = t("chat.send_image");
    this.cancelImageButton.textContent = t("chat.cancel");
    this.previewImg.alt = t("chat.preview");
    this.renderUnread();
    this.renderList();
  }

  setLargeText(on) {
    this.largeText = on;
    document.body.classList.toggle("large-text", on);
    try {
      window.localStorage.setItem(LARGE_TEXT_KEY, on ? "1" : "0");
    } catch {
      // not kept; still applies now
    }
    this.renderAll();
  }

  setCollapsed(collapsed) {
    this.collapsed = collapsed;
    this.root.classList.toggle("chat-collapsed", collapsed);
    this.body.hidden = collapsed;
    if (!collapsed) {
      this.scrollToEnd();
      this.markRead();
    }
    this.renderAll();
  }

  atBottom() {
    return this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 24;
  }

  scrollToEnd() {
    this.list.scrollTop = this.list.scrollHeight;
  }

  markRead() {
    this.unread = 0;
    this.renderUnread();
  }

  renderUnread() {
    this.state.unread = this.unread;
    this.badge.hidden = this.unread === 0;
    this.badge.textContent = t("chat.unread", { count: this.unread });
    this.jump.hidden = this.unread === 0 || this.collapsed;
    this.root.dataset.unread = String(this.unread);
  }

  showNotice(code) {
    if (code === null) {
      this.notice.hidden = true;
      delete this.notice.dataset.code;
      return;
    }
    this.state.errors.push(code);
    this.notice.hidden = false;
    this.notice.dataset.code = code;
    this.notice.textContent = errorText(code);
  }

  // --- Messages --------------------------------------------------------------------------------

  get lastSeq() {
    let seq = this.state.lastSeq;
    while (this.messages.has(seq + 1)) seq += 1;
    return seq;
  }

  /** Keep `message`; returns true when it is new. */
  keep(message) {
    this.state.received.push(message.seq);
    if (this.messages.has(message.seq)) return false;
    this.messages.set(message.seq, message);
    if (message.retracts_id) this.retracted.add(message.retracts_id);
    this.state.lastSeq = this.lastSeq;
    return true;
  }

  /** A live message from the room. */
  onMessage(message) {
    if (!message || typeof message.seq !== "number") return;
    const wasAtBottom = this.atBottom();
    if (!this.keep(message)) return;
    const mine = this.self && message.sender_id === this.self.id;
    if (!mine && (this.collapsed || !wasAtBottom)) this.unread += 1;
    this.renderList();
    if (mine || (wasAtBottom && !this.collapsed)) this.scrollToEnd();
    this.renderUnread();
    if (message.seq > this.lastSeq) this.catchUp(); // a gap: something was missed
  }

  /** Joined (first time or again): fetch everything after the last seq held. */
  async onJoined(participant, roomId) {
    this.self = participant;
    this.roomId = roomId;
    await this.catchUp();
  }

  async catchUp() {
    if (this.catchingUp) return this.catchingUp;
    this.catchingUp = (async () => {
      try {
        for (;;) {
          const reply = await this.request("chat_history", { after: this.lastSeq });
          for (const message of reply.messages ?? []) this.keep(message);
          if (!reply.more) break;
        }
        this.renderList();
        if (!this.collapsed) this.scrollToEnd();
      } catch (err) {
        console.warn("[chat] history", err?.code ?? err);
      } finally {
        this.catchingUp = null;
      }
    })();
    return this.catchingUp;
  }

  renderList() {
    const ordered = [...this.messages.values()].sort((a, b) => a.seq - b.seq);
    this.state.messages = ordered;
    this.empty.hidden = ordered.length > 0;
    const existing = new Map([...this.list.children].map((item) => [Number(item.dataset.seq), item]));
    let previous = null;
    for (const message of ordered) {
      let item = existing.get(message.seq);
      const fresh = this.renderItem(message);
      if (item) item.replaceWith(fresh);
      else if (previous) previous.after(fresh);
      else this.list.prepend(fresh);
      item = fresh;
      previous = item;
    }
  }

  renderItem(message) {
    const mine = this.self && message.sender_id === this.self.id;
    const who = mine ? t("chat.me") : t(`role.${message.sender_role}`);
    const time = new Date(message.at).toLocaleTimeString(document.documentElement.lang, {
      hour: "2-digit",
      minute: "2-digit",
    });
    const item = make("li", {
      className: `chat-item${mine ? " chat-mine" : ""}`,
      dataset: { seq: String(message.seq), kind: message.kind, role: message.sender_role },
    });
    const meta = make(
      "div",
      { className: "chat-meta" },
      make("span", { className: "chat-who" }, who),
      make("time", { className: "chat-time", dateTime: message.at }, time),
    );
    item.append(meta);
    if (message.kind === "retraction") {
      item.classList.add("chat-retraction");
      item.append(make("p", { className: "chat-text" }, `${who} ${t("chat.retraction")}`));
      return item;
    }
    if (this.retracted.has(message.id)) {
      item.classList.add("chat-retracted");
      item.append(make("p", { className: "chat-text" }, t("chat.retracted")));
      return item;
    }
    if (message.image_id) item.append(this.thumbnail(message.image_id));
    if (message.text) item.append(make("p", { className: "chat-text" }, message.text));
    if (mine) {
      const retract = make("button", { type: "button", className: "chat-link" }, t("chat.retract"));
      retract.addEventListener("click", () => this.retract(message.id));
      item.append(retract);
    }
    return item;
  }

  thumbnail(imageId) {
    const img = make("img", { className: "chat-thumb", alt: t("chat.image_alt") });
    img.dataset.imageId = imageId;
    const button = make("button", { type: "button", className: "chat-thumb-btn", title: t("chat.open_image") }, img);
    button.addEventListener("click", () => this.openImage(imageId));
    if (!this.thumbUrls.has(imageId)) {
      this.thumbUrls.set(imageId, this.fetchImage(`/api/v1/chat/images/${imageId}/thumbnail`));
    }
    this.thumbUrls
      .get(imageId)
      .then((url) => {
        img.src = url;
        img.dataset.loaded = "true";
      })
      .catch((err) => console.warn("[chat] thumbnail", err));
    return button;
  }

  /** Images are served to the room's participants only: fetch with the room token. */
  async fetchImage(path) {
    const response = await fetch(path, { headers: { Authorization: `Bearer ${this.token}` } });
    if (!response.ok) throw new Error(`image ${response.status}`);
    return URL.createObjectURL(await response.blob());
  }

  async openImage(imageId) {
    try {
      const url = await this.fetchImage(`/api/v1/chat/images/${imageId}`);
      const close = make("button", { type: "button", className: "chat-btn" }, t("chat.close_image"));
      close.addEventListener("click", () => {
        this.viewer.close();
        URL.revokeObjectURL(url);
      });
      this.viewer.replaceChildren(make("img", { src: url, alt: t("chat.image_alt") }), close);
      this.viewer.showModal();
    } catch (err) {
      console.warn("[chat] image", err);
    }
  }

  // --- Sending ---------------------------------------------------------------------------------

  async sendText() {
    const text = this.input.value.trim();
    if (!text) return;
    this.sendButton.disabled = true;
    try {
      const reply = await this.request("chat", { text });
      this.input.value = "";
      this.showNotice(null);
      this.onMessage(reply.message);
    } catch (err) {
      this.showNotice(err?.code ?? "unknown");
    } finally {
      this.sendButton.disabled = false;
      this.input.focus();
    }
  }

  async retract(messageId) {
    try {
      const reply = await this.request("chat_retract", { message_id: messageId });
      this.onMessage(reply.message);
    } catch (err) {
      this.showNotice(err?.code ?? "unknown");
    }
  }

  pick() {
    const file = this.fileInput.files?.[0];
    if (!file) return;
    this.clearPick();
    this.pendingFile = file;
    this.previewImg.src = URL.createObjectURL(file);
    this.preview.hidden = false;
    this.showNotice(null);
  }

  clearPick() {
    if (this.previewImg.src) URL.revokeObjectURL(this.previewImg.src);
    this.previewImg.removeAttribute("src");
    this.pendingFile = null;
    this.preview.hidden = true;
    this.progress.hidden = true;
    this.progressText.textContent = "";
    this.fileInput.value = "";
  }

  /** Upload with XMLHttpRequest (its upload progress drives the bar), then send the message. */
  upload(file) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/api/v1/rooms/${encodeURIComponent(this.roomId)}/chat/images`);
      xhr.setRequestHeader("Authorization", `Bearer ${this.token}`);
      xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (event) => {
        if (!event.lengthComputable) return;
        const percent = Math.round((event.loaded / event.total) * 100);
        this.progress.value = percent;
        this.state.uploadProgress = percent;
        this.progressText.textContent = t("chat.uploading", { percent });
      });
      xhr.addEventListener("load", () => {
        if (xhr.status === 201) resolve(xhr.response);
        else reject(Object.assign(new Error("upload"), { code: xhr.response?.error?.code ?? "upload_failed" }));
      });
      xhr.addEventListener("error", () => reject(Object.assign(new Error("upload"), { code: "upload_failed" })));
      xhr.send(file);
    });
  }

  async sendImage() {
    const file = this.pendingFile;
    if (!file) return;
    this.sendImageButton.disabled = true;
    this.progress.hidden = false;
    this.progress.value = 0;
    try {
      const image = await this.upload(file);
      const caption = this.input.value.trim();
      const payload = caption ? { image_id: image.id, text: caption } : { image_id: image.id };
      const reply = await this.request("chat", payload);
      if (caption) this.input.value = "";
      this.clearPick();
      this.showNotice(null);
      this.onMessage(reply.message);
    } catch (err) {
      this.showNotice(err?.code ?? "upload_failed");
      this.progress.hidden = true;
    } finally {
      this.sendImageButton.disabled = false;
    }
  }
}
