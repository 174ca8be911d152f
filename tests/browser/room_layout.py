"""Geometry checks of the consult room, shared by the room's browser tests (issue 12).

``check_room_layout(page, ...)`` reads the boxes of the remote video, the tile labels, the
control bar and the chat input from the live page and asserts that the remote video is on
screen without scrolling and that the control bar covers nothing.
"""

from __future__ import annotations

from typing import Any

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
