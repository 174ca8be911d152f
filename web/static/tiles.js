// Tiles of a room: one per remote participant, keyed by participant id, any number of them (a
// grid), each labelled with the person's name and room role (doctor, patient, guardian,
// companion, interpreter ...), muted flags, connection quality and "reconnecting".

import { t } from "./i18n.js";
import { useSpeaker } from "./local-media.js";

/** The room role of a participant: `room_role` when the server sends one, else `role`. */
export function roomRole(p) {
  return p.room_role ?? p.role ?? "unknown";
}

/** The word for a room role in the current language ("参与者" / "Participant" when unknown). */
export function roleLabel(role) {
  const key = `role.${role}`;
  const text = t(key);
  return text === key ? t("role.unknown") : text;
}

export function makeQuality() {
  const quality = document.createElement("span");
  quality.className = "quality";
  quality.hidden = true;
  const bars = document.createElement("span");
  bars.className = "quality-bars";
  bars.setAttribute("aria-hidden", "true");
  for (let i = 0; i < 3; i += 1) bars.append(document.createElement("i"));
  const text = document.createElement("span");
  text.className = "quality-text";
  quality.append(bars, text);
  return quality;
}

/** Show `level` ("good" | "poor" | "lost"; undefined: not measured yet) in a quality element. */
export function renderQuality(container, level) {
  container.hidden = !level;
  if (!level) return;
  container.dataset.quality = level;
  container.querySelector(".quality-text").textContent = t(`quality.${level}`);
  container.setAttribute("aria-label", t("quality.aria", { quality: t(`quality.${level}`) }));
  container.title = t(`quality.${level}`);
}

export function renderFlags(container, audioMuted, videoMuted) {
  const flags = [];
  if (audioMuted) flags.push(["audio", t("tile.audio_muted")]);
  if (videoMuted) flags.push(["video", t("tile.video_muted")]);
  container.replaceChildren(
    ...flags.map(([kind, text]) => {
      const flag = document.createElement("span");
      flag.className = `flag flag-${kind}`;
      flag.dataset.flag = kind;
      flag.textContent = text;
      return flag;
    }),
  );
}

class RemoteTile {
  constructor(grid, participant) {
    this.grid = grid;
    this.participant = participant;
    this.audioTrack = null;
    this.videoTrack = null;
    this.hasFrame = false;
    this.videoPaused = grid.pausedVideo.has(participant.id); // for this page's poor network

    this.root = document.createElement("article");
    this.root.className = "tile tile-remote";
    this.media = document.createElement("div");
    this.media.className = "tile-media";
    this.video = document.createElement("video");
    this.video.autoplay = true;
    this.video.muted = true; // sound plays from the <audio> element; muted video always autoplays
    this.video.playsInline = true;
    this.placeholder = document.createElement("div");
    this.placeholder.className = "tile-placeholder";
    this.audio = document.createElement("audio");
    this.audio.autoplay = true;
    this.reconnecting = document.createElement("div");
    this.reconnecting.className = "tile-reconnecting";
    this.reconnecting.setAttribute("role", "status");
    this.media.append(this.video, this.placeholder, this.reconnecting, this.audio);

    const label = document.createElement("div");
    label.className = "tile-label";
    const who = document.createElement("span");
    who.className = "tile-who";
    this.nameEl = document.createElement("span");
    this.nameEl.className = "tile-name";
    this.roleEl = document.createElement("span");
    this.roleEl.className = "tile-role";
    who.append(this.nameEl, this.roleEl);
    this.flags = document.createElement("span");
    this.flags.className = "tile-flags";
    this.quality = makeQuality();
    label.append(who, this.quality, this.flags);

    this.root.append(this.media, label);
    grid.container.append(this.root);
    this.render();
  }

  get id() {
    return this.participant.id;
  }

  update(participant) {
    this.participant = participant;
    this.render();
  }

  setMedia({ audio, video }) {
    if (video !== this.videoTrack) {
      this.videoTrack = video;
      this.hasFrame = false;
      this.video.srcObject = video ? new MediaStream([video]) : null;
      if (video) {
        this.watchFirstFrame(this.video.srcObject);
        this.video.play().catch(() => {}); // muted: only fails when the element is torn down
      }
      this.render();
    }
    if (audio !== this.audioTrack) {
      this.audioTrack = audio;
      this.audio.srcObject = audio ? new MediaStream([audio]) : null;
      if (audio) {
        useSpeaker(this.audio);
        this.grid.playAudio(this.audio);
      }
    }
  }

  watchFirstFrame(stream) {
    const mark = () => {
      if (this.video.srcObject !== stream || this.hasFrame) return;
      this.hasFrame = true;
      this.grid.onFirstFrame(this.id);
      console.info("[tc] first frame from", this.id);
      this.render();
    };
    this.video.addEventListener("loadeddata", mark, { once: true });
    if ("requestVideoFrameCallback" in this.video) this.video.requestVideoFrameCallback(mark);
  }

  render() {
    const p = this.participant;
    const role = roomRole(p);
    const roleText = roleLabel(role);
    const name = p.label ?? p.name ?? roleText;
    this.root.dataset.participantId = p.id;
    this.root.dataset.role = role;
    this.root.setAttribute("aria-label", t("tile.aria", { name, role: roleText }));
    this.video.dataset.participantId = p.id;
    this.video.dataset.role = role;
    this.video.setAttribute("aria-label", t("tile.video_aria", { name }));
    this.nameEl.textContent = name;
    this.roleEl.textContent = roleText;
    renderFlags(this.flags, p.audio_muted, p.video_muted);
    const reconnecting = p.state === "reconnecting";
    this.root.dataset.state = p.state ?? "connected";
    this.reconnecting.hidden = !reconnecting;
    this.reconnecting.textContent = reconnecting ? t("tile.reconnecting") : "";
    renderQuality(this.quality, reconnecting ? "lost" : this.grid.quality(p.id));
    let placeholder = null;
    if (p.video_muted) placeholder = t("tile.video_muted");
    else if (this.videoPaused) placeholder = t("tile.video_paused_network");
    else if (!this.hasFrame) placeholder = t("tile.waiting_video");
    this.root.dataset.videoPaused = this.videoPaused ? "true" : "false";
    // "reconnecting" says it over the picture; a second text under it would only be a jumble
    this.placeholder.hidden = placeholder === null || reconnecting;
    this.placeholder.textContent = placeholder ?? "";
  }

  remove() {
    this.video.srcObject = null;
    this.audio.srcObject = null;
    this.root.remove();
  }
}

/**
 * The remote tiles of a room, in `container` (the grid). `options`:
 * - `quality(id)`: the measured level of a participant's connection (or undefined);
 * - `onFirstFrame(id)`: the first frame of a participant's video was shown;
 * - `onAudioBlocked()`: the browser refused to play sound before a click on the page.
 */
export class TileGrid {
  constructor(container, { quality = () => undefined, onFirstFrame = () => {}, onAudioBlocked = () => {} } = {}) {
    this.container = container;
    this.tiles = new Map(); // participant id -> RemoteTile
    this.pausedVideo = new Set(); // ids whose video the server paused for our network
    this.blockedAudio = new Set();
    this.quality = quality;
    this.onFirstFrame = onFirstFrame;
    this.onAudioBlocked = onAudioBlocked;
  }

  get size() {
    return this.tiles.size;
  }

  values() {
    return this.tiles.values();
  }

  /** Make the tiles match `remote` (the participants other than this page): new ones appear,
   * gone ones are removed, the rest are updated. */
  update(remote) {
    const ids = new Set(remote.map((p) => p.id));
    for (const [id, tile] of this.tiles) {
      if (!ids.has(id)) {
        tile.remove();
        this.tiles.delete(id);
      }
    }
    for (const participant of remote) {
      const tile = this.tiles.get(participant.id);
      if (tile) tile.update(participant);
      else this.tiles.set(participant.id, new RemoteTile(this, participant));
    }
    this.container.dataset.count = String(this.tiles.size);
  }

  /** Give each tile its tracks (participant id -> {audio, video}). */
  setMedia(tracks) {
    for (const tile of this.tiles.values()) tile.setMedia(tracks.get(tile.id) ?? { audio: null, video: null });
  }

  setVideoPaused(id, paused) {
    if (paused) this.pausedVideo.add(id);
    else this.pausedVideo.delete(id);
    const tile = this.tiles.get(id);
    if (tile) {
      tile.videoPaused = paused;
      tile.render();
    }
  }

  /** A new subscribe connection: nothing is paused for it yet. */
  clearPaused() {
    this.pausedVideo.clear();
    for (const tile of this.tiles.values()) tile.videoPaused = false;
  }

  playAudio(audio) {
    audio.play().catch((err) => {
      // Autoplay policy: sound may need one click on the page first.
      if (err?.name === "NotAllowedError") {
        this.blockedAudio.add(audio);
        this.onAudioBlocked();
      }
    });
  }

  /** After a click: play what the browser refused before. */
  unblockAudio() {
    for (const audio of this.blockedAudio) audio.play().catch(() => {});
    this.blockedAudio.clear();
  }

  render() {
    for (const tile of this.tiles.values()) tile.render();
  }

  clear() {
    for (const tile of this.tiles.values()) tile.remove();
    this.tiles.clear();
    this.container.dataset.count = "0";
  }
}
