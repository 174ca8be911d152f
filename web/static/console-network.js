// Network providers (R28, R31; docs/providers.md): each provider's state, since when, how many
// media paths failed over off it and its last failover, for operators and administrators.
// Read from `GET /providers` when the tab opens and every few seconds while it is shown.

import { t } from "./i18n.js";
import { api } from "./api.js";
import { portal, showError } from "./portal.js";
import { button, h } from "./console-dom.js";
import { ctx } from "./console.js";

/** How often the shown tab reads the providers again. */
const REFRESH_MS = 5_000;

let health = null; // the last answer of GET /providers
let timer = null;

const $ = (id) => document.getElementById(id);

/** Local time with seconds of a Unix time in seconds, e.g. "12月3日 09:30:05". */
function at(seconds) {
  return new Date(seconds * 1000).toLocaleString(document.documentElement.lang || "zh-CN", {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

function failoverText(f) {
  return t("network.failover", {
    time: at(f.at),
    from: f.from_provider,
    to: f.to_provider,
    gap: f.gap_ms,
    transport: t(`network.transport.${f.transport === "publish" ? "publish" : "subscribe"}`),
  });
}

function render() {
  $("provider-refresh").replaceChildren(button("network.refresh", () => refresh().catch(showError)));
  const list = $("provider-list");
  if (!health) return;
  $("provider-empty").hidden = health.providers.length > 0;
  const last = $("provider-last");
  last.textContent = health.last_failover ? failoverText(health.last_failover) : t("network.no_failover");
  list.replaceChildren(
    ...health.providers.map((p) =>
      h(
        "li",
        { class: "row", dataset: { provider: p.name, state: p.state } },
        h(
          "div",
          { class: "row-main" },
          h("div", { class: "row-title", text: `${p.name} · ${p.address}` }),
          h(
            "div",
            { class: "row-meta" },
            h("span", { class: "row-status provider-state", dataset: { state: p.state }, text: t(`network.state.${p.state}`) }),
            " · ",
            t("network.since", { time: at(p.since) }),
            " · ",
            t("network.failovers_from", { count: p.failovers_from }),
          ),
          p.last_failover ? h("div", { class: "row-meta provider-failover", text: failoverText(p.last_failover) }) : null,
        ),
      ),
    ),
  );
}

async function refresh() {
  health = await api("GET", "/providers");
  render();
}

/** Read again every REFRESH_MS while the tab is shown and the page visible. */
function keepFresh() {
  clearInterval(timer);
  timer = setInterval(() => {
    if (portal.tab !== "network") {
      clearInterval(timer);
      timer = null;
      return;
    }
    if (document.visibilityState === "visible") refresh().catch(showError);
  }, REFRESH_MS);
}

export function initNetwork() {
  render();
  ctx.refreshers.set("network", async () => {
    await refresh();
    keepFresh();
  });
  ctx.renderers.add(render);
}
