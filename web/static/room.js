// The consult room page (/room?visit=...#token=..., the token read by join-link.js): the room
// view alone under the top bar.
// Patients (and anyone opening a room link) land here; the doctor's queue mounts the same view
// beside the queue (queue.js). The room itself is room-view.js.

import { initLanguageToggle, onLanguageChange } from "./i18n.js";
import { takeJoinToken } from "./join-link.js";
import { RoomView } from "./room-view.js";

const params = new URLSearchParams(window.location.search);
const toggle = document.getElementById("lang-toggle");
initLanguageToggle(toggle);
const syncToggle = () => {
  toggle.lang = document.documentElement.lang === "en" ? "zh-CN" : "en";
};
onLanguageChange(syncToggle);
syncToggle();

// A text-and-image visit (R1): no camera, no microphone, no getUserMedia at all.
const textOnly = params.get("mode") === "text";
document.body.classList.toggle("text-only", textOnly);
const view = new RoomView(document.getElementById("room-root"), {
  visitId: params.get("visit"),
  roomId: params.get("room"),
  token: takeJoinToken(),
  textOnly,
});
view.start();
