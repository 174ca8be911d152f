// The consult room's markup (room-view.js fills it): static text only, as data-i18n keys; the
// ids the CSS and the tests know. `ids.status` / `ids.error`: the status and error lines' ids
// (a host page may have its own #status and #error).

const ICON = {
  mic: '<rect x="9" y="2" width="6" height="12" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v4M8 22h8"/>',
  cam: '<rect x="2" y="6" width="14" height="12" rx="2"/><path d="M16 10l6-4v12l-6-4"/>',
  self: '<rect x="2" y="4" width="20" height="16" rx="2"/><rect x="12" y="12" width="8" height="6" rx="1"/>',
  full: '<path d="M3 9V3h6M21 9V3h-6M3 15v6h6M21 15v6h-6"/>',
  leave: '<path d="M10 4H5v16h5M14 8l4 4-4 4M18 12H9"/>',
  viewer: '<rect x="3" y="3" width="18" height="18" rx="2"/><circle cx="12" cy="12" r="5"/><path d="M3 12h4M17 12h4"/>',
  doctors: '<circle cx="8" cy="7" r="3"/><circle cx="16" cy="7" r="3"/><path d="M2 20c0-3.5 2.7-6 6-6s6 2.5 6 6M12 20c0-3.5 1.6-6 4-6s6 2.5 6 6"/>',
  slash: '<path class="icon-slash" d="M3 3l18 18"/>',
};

function icon(name, slash = false) {
  return `<svg class="btn-icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">${ICON[name]}${
    slash ? ICON.slash : ""
  }</svg>`;
}

/** The view's markup. Static text only (data-i18n keys); ids the tests and CSS know. */
export function markup(ids) {
  return `
  <div class="room-bar">
    <p id="${ids.status}" class="status room-status" role="status" aria-live="polite" data-state="init"></p>
    <span id="recording-badge" class="recording-badge" data-i18n="room.recording" hidden></span>
    <span id="call-timer" class="call-timer" role="timer" hidden>
      <svg class="call-timer-icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
        <circle cx="12" cy="13" r="8"/><path d="M12 9v4l3 2M9 2h6"/>
      </svg>
      <span class="call-timer-label" data-i18n="timer.label"></span>
      <span class="call-timer-time">00:00</span>
    </span>
    <a id="viewer-link" class="btn btn-host" target="_blank" rel="noopener" data-i18n-title="room.viewer_title" hidden>
      ${icon("viewer")}<span class="btn-text" data-i18n="room.viewer"></span>
    </a>
    <button type="button" id="step-out-button" class="btn btn-host" aria-haspopup="dialog" hidden>
      ${icon("doctors")}<span class="btn-text" data-i18n="host.step_out"></span>
    </button>
  </div>
  <p id="media-error" class="notice notice-warning" role="alert" hidden></p>
  <p id="${ids.error}" class="notice notice-error" role="alert" hidden></p>
  <section id="doctors-only" class="notice doctors-only" aria-labelledby="doctors-only-text" hidden>
    <p id="doctors-only-text" class="doctors-only-text" role="status" data-i18n="host.banner"></p>
    <button type="button" id="bring-back-button" class="btn btn-primary" data-i18n="host.bring_back" hidden></button>
  </section>
  <dialog id="step-out-dialog" class="confirm-dialog" aria-labelledby="step-out-title"
          aria-describedby="step-out-text">
    <h2 id="step-out-title" class="confirm-title" data-i18n="host.confirm_title"></h2>
    <p id="step-out-text" data-i18n="host.confirm_text"></p>
    <div class="confirm-actions">
      <button type="button" id="step-out-confirm" class="btn btn-danger" data-i18n="host.confirm"></button>
      <button type="button" id="step-out-cancel" class="btn" data-i18n="host.cancel"></button>
    </div>
  </dialog>
  <div class="room-body">
    <div class="room-main" id="room">
      <div class="stage" id="stage">
        <section id="tiles" class="tiles" data-count="0" data-i18n-aria="tiles.aria"></section>
        <p id="remote-empty" class="remote-empty" data-i18n="remote.empty" hidden></p>
        <article id="local-tile" class="tile tile-local" aria-labelledby="local-name">
          <div class="tile-media">
            <video id="local-video" autoplay muted playsinline data-i18n-aria="local.video_aria"></video>
            <div class="tile-placeholder" id="local-placeholder" hidden></div>
          </div>
          <div class="tile-label">
            <span id="local-name" class="tile-name"></span>
            <span id="local-quality" class="quality" hidden>
              <span class="quality-bars" aria-hidden="true"><i></i><i></i><i></i></span>
              <span class="quality-text"></span>
            </span>
            <span class="tile-flags" id="local-flags"></span>
          </div>
        </article>
        <button type="button" id="enable-sound" class="btn btn-primary btn-sound" hidden
                data-i18n="button.enable_sound"></button>
      </div>
      <nav id="controls" class="controls" data-i18n-aria="controls.aria">
        <button type="button" id="mic-button" class="btn btn-control" data-muted="false" aria-pressed="false" disabled>
          ${icon("mic", true)}<span class="btn-text"></span>
        </button>
        <button type="button" id="cam-button" class="btn btn-control" data-muted="false" aria-pressed="false" disabled>
          ${icon("cam", true)}<span class="btn-text"></span>
        </button>
        <button type="button" id="selfview-button" class="btn btn-control btn-secondary-control" aria-pressed="true">
          ${icon("self")}<span class="btn-text"></span>
        </button>
        <button type="button" id="fullscreen-button" class="btn btn-control btn-secondary-control" aria-pressed="false">
          ${icon("full")}<span class="btn-text"></span>
        </button>
        <button type="button" id="leave-button" class="btn btn-danger" data-i18n-aria="button.leave_aria">
          ${icon("leave")}<span class="btn-text" data-i18n="button.leave"></span>
        </button>
      </nav>
    </div>
    <aside class="room-side" data-i18n-aria="side.aria">
      <div id="room-visit-slot" class="room-visit-slot" hidden></div>
      <section id="chat" class="chat-panel" aria-labelledby="chat-title"></section>
    </aside>
  </div>
  <section id="left-panel" class="left-panel" hidden>
    <p id="left-message" class="left-message" data-i18n="left.message"></p>
    <button type="button" id="rejoin" class="btn btn-primary" data-i18n="button.rejoin"></button>
  </section>`;
}
