"""Geometry checks of the consult room and the portal's pages, shared by the browser tests
(issue 12).

``check_room_layout(page, ...)`` reads the boxes of the remote video, the tile labels, the
control bar and the chat input from the live page and asserts that the remote video is on
screen without scrolling and that the control bar covers nothing.

``check_reference(page, name, regions)`` compares the boxes of a page's main regions with a
kept reference, ``references/<name>.json`` beside this file, within a few pixels (element
geometry, not pixels: live video differs from frame to frame). When a layout changes on
purpose, regenerate the references by running the tests that check them with
``TELECONSULT_UPDATE_REFERENCES=1`` and commit the JSON files they write (and look at the
screenshots the tests save next to them in their tmp_path first).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REFERENCES = Path(__file__).resolve().parent / "references"
UPDATE_ENV = "TELECONSULT_UPDATE_REFERENCES"
TOLERANCE_PX = 4.0

# The room's main regions (CSS selectors; the first visible match of each).
ROOM_REGIONS = {
    "room-bar": ".room-bar",
    "stage": "#stage",
    "remote-video": ".tile-remote video",
    "remote-label": ".tile-remote .tile-label",
    # the picture only: the tile's label gains a line when the signal quality shows up
    "local-picture": "#local-tile .tile-media",
    "controls": "#controls",
    "mic-button": "#mic-button",
    "cam-button": "#cam-button",
    "selfview-button": "#selfview-button",
    "fullscreen-button": "#fullscreen-button",
    "leave-button": "#leave-button",
    "side": ".room-side",
    "chat-input": "#chat-input",
}

# A portal page: its top bar, its main column and each visible card of it (by id, or by
# position for a card without one).
PAGE_REGIONS_JS = """
() => {
  const out = { topbar: ".topbar", main: "main" };
  [...document.querySelectorAll("main > *")].forEach((el, i) => {
    // notices come and go with the page's messages: not part of the layout
    if (el.offsetParent === null || el.classList.contains("notice")) return;
    const selector = el.id ? `#${el.id}` : `main > :nth-child(${i + 1})`;
    out[selector] = selector;
  });
  return out;
}
"""

REGIONS_JS = """
(selectors) => {
  const out = {};
  for (const [name, selector] of Object.entries(selectors)) {
    const el = [...document.querySelectorAll(selector)].find((e) => {
      const r = e.getBoundingClientRect();
      const style = getComputedStyle(e);
      return r.width > 0 && r.height > 0 && style.visibility !== "hidden";
    });
    if (!el) { out[name] = null; continue; }
    const r = el.getBoundingClientRect();
    // document coordinates, rounded to a pixel: the same wherever the page is scrolled
    out[name] = { left: Math.round(r.left + window.scrollX), top: Math.round(r.top + window.scrollY),
                  width: Math.round(r.width), height: Math.round(r.height) };
  }
  return { viewport: { width: window.innerWidth, height: window.innerHeight }, regions: out };
}
"""

GEOMETRY_JS = """
() => {
  const box = (el) => {
    if (!el) return null;
    const r = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (style.display === "none" || style.visibility === "hidden" || r.width === 0) return null;
    return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height };
  };
  const all = (sel) => [...document.querySelectorAll(sel)].map(box).filter(Boolean);
  return {
    viewport: { width: window.innerWidth, height: window.innerHeight },
    scroll: { x: window.scrollX, y: window.scrollY },
    docWidth: document.documentElement.scrollWidth,
    remoteVideos: all(".tile-remote video"),
    remoteLabels: all(".tile-remote .tile-label"),
    local: box(document.querySelector("#local-tile")),
    controls: box(document.querySelector("#controls")),
    controlButtons: all("#controls .btn"),
    chatInput: box(document.querySelector("#chat-input")),
  };
}
"""


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["left"] < b["right"]
        and b["left"] < a["right"]
        and a["top"] < b["bottom"]
        and b["top"] < a["bottom"]
    )


def room_geometry(page: Any) -> dict[str, Any]:
    return page.evaluate(GEOMETRY_JS)


def check_room_layout(page: Any, *, min_video_width: float, remotes: int = 1) -> dict[str, Any]:
    """Assert the room's layout on ``page`` as it is now, unscrolled; returns the geometry."""
    page.evaluate("() => window.scrollTo(0, 0)")
    g = room_geometry(page)
    vw, vh = g["viewport"]["width"], g["viewport"]["height"]
    assert g["docWidth"] <= vw + 1, f"the page scrolls sideways: {g['docWidth']} > {vw}"
    assert len(g["remoteVideos"]) == remotes, g
    for video in g["remoteVideos"]:
        # the whole remote picture is on the first screen
        assert video["top"] >= 0 and video["left"] >= 0, video
        assert video["bottom"] <= vh + 0.5 and video["right"] <= vw + 0.5, (video, g["viewport"])
        assert video["width"] >= min_video_width, (video, min_video_width)
    controls = g["controls"]
    assert controls is not None and controls["bottom"] <= vh + 0.5, (controls, g["viewport"])
    # the control bar covers no name label, no picture and not the chat's input
    for item in [*g["remoteLabels"], *g["remoteVideos"]] + (
        [g["chatInput"]] if g["chatInput"] else []
    ):
        assert not _overlap(controls, item), (controls, item)
    if g["chatInput"] is not None and g["viewport"]["width"] > 900:
        # beside the video on a computer: the chat's input is on the first screen too
        assert g["chatInput"]["bottom"] <= vh + 0.5, (g["chatInput"], g["viewport"])
    for button in g["controlButtons"]:
        assert button["height"] >= 44 and button["width"] >= 44, button
    return g


def page_regions(page: Any) -> dict[str, str]:
    """The selectors of a portal page's main regions as the page is now."""
    return dict(page.evaluate(PAGE_REGIONS_JS))


def _differences(kept: dict[str, Any], now: dict[str, Any], tolerance: float) -> list[str]:
    out: list[str] = []
    if kept["viewport"] != now["viewport"]:
        out.append(f"viewport {kept['viewport']} -> {now['viewport']}")
    for name in sorted(set(kept["regions"]) | set(now["regions"])):
        a, b = kept["regions"].get(name, "absent"), now["regions"].get(name, "absent")
        if not isinstance(a, dict) or not isinstance(b, dict):
            if a != b:
                out.append(f"{name}: {a} -> {b}")
            continue
        moved = {k: (a[k], b[k]) for k in a if abs(a[k] - b[k]) > tolerance}
        if moved:
            out.append(f"{name}: {moved}")
    return out


def check_reference(
    page: Any,
    name: str,
    regions: dict[str, str],
    shots: Path | None = None,
    tolerance: float = TOLERANCE_PX,
) -> dict[str, Any]:
    """Compare the boxes of ``regions`` (name -> selector) on ``page`` with the kept reference
    ``references/<name>.json``, each edge within ``tolerance`` px; save a screenshot to
    ``shots/<name>.png`` for a person to compare. With TELECONSULT_UPDATE_REFERENCES=1 the
    reference is written from the page instead. Returns the measured geometry."""
    now = page.evaluate(REGIONS_JS, regions)
    if shots is not None:
        page.screenshot(path=str(shots / f"{name}.png"))
    path = REFERENCES / f"{name}.json"
    if os.environ.get(UPDATE_ENV) == "1":
        REFERENCES.mkdir(exist_ok=True)
        path.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"reference written: {path}")
        return dict(now)
    assert path.is_file(), (
        f"no kept reference {path}: run the test with {UPDATE_ENV}=1 to write it, and commit it"
    )
    kept = json.loads(path.read_text())
    differences = _differences(kept, now, tolerance)
    assert not differences, (
        f"{name}: the layout moved from {path.name} by more than {tolerance} px "
        f"(screenshot in {shots}; if on purpose, rerun with {UPDATE_ENV}=1):\n"
        + "\n".join(differences)
    )
    return dict(now)


# Each visible control button's label split into the lines the browser laid it out on.
LABEL_LINES_JS = """
() => [...document.querySelectorAll("#controls .btn .btn-text")]
  // shown words only (a word kept for screen readers alone is clipped to 1 px)
  .filter((el) => el.offsetParent !== null && el.getBoundingClientRect().width > 1)
  .map((el) => {
    const lines = [];
    let top = null;
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      const node = walker.currentNode;
      for (let i = 0; i < node.length; i += 1) {
        const range = document.createRange();
        range.setStart(node, i);
        range.setEnd(node, i + 1);
        const rect = range.getClientRects()[0];
        if (!rect || rect.width === 0) continue;
        const y = Math.round(rect.top);
        if (top === null || Math.abs(y - top) > 2) { lines.push(""); top = y; }
        lines[lines.length - 1] += node.data[i];
      }
    }
    return { id: el.closest(".btn").id, text: el.textContent, lines: lines.map((l) => l.trim()) };
  })
"""


def check_control_labels(page: Any, max_lines: int = 2) -> list[dict[str, Any]]:
    """Assert that no control button's label is broken up: at most ``max_lines`` lines, no
    line of a single character (a Chinese label wrapping one character per line) and, in a
    label of words, breaks only between words. Returns the labels' lines."""
    labels: list[dict[str, Any]] = page.evaluate(LABEL_LINES_JS)
    assert labels, "no control label is shown"
    for label in labels:
        lines = label["lines"]
        assert 1 <= len(lines) <= max_lines, label
        if len(label["text"].strip()) > 1:
            assert all(len(line) >= 2 for line in lines), label
        if " " in label["text"].strip():
            # a break inside a word leaves a line that is not a run of the label's words
            words = label["text"].split()
            for line in lines:
                assert " ".join(line.split()) in " ".join(words), label
                assert all(word in words for word in line.split()), label
    return labels
