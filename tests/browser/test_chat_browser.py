"""A text-only visit between two Chromium pages (R1): text both ways, an image with its preview and
upload progress, the unread marker, large-text mode (R43), the English toggle, and the history
after a reload (R23). Neither page asks for a camera or a microphone.

Real Debian Chromium and the real server inside a private network namespace (see conftest.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from chat_images import jpeg_with_gps

Server = Any
pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

WAIT_MS = 15_000

# Counts getUserMedia calls: a text-only page must make none.
COUNT_GUM = """
window.__gum = 0;
if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (constraints) => {
    window.__gum += 1;
    return original(constraints);
  };
}
"""


@pytest.fixture
def text_room(chromium: Any) -> Iterator[Callable[[str, str], Any]]:
    """Open a room link in text mode, in its own browser context, counting getUserMedia."""
    contexts: list[Any] = []
    logs: dict[str, list[str]] = {}

    def _open(role: str, url: str) -> Any:
        context = chromium.new_context(viewport={"width": 1100, "height": 1000}, locale="zh-CN")
        contexts.append(context)
        context.add_init_script(COUNT_GUM)
        page = context.new_page()
        logs[role] = []
        page.on("console", lambda msg: logs[role].append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: logs[role].append(f"pageerror: {exc}"))
        # the join token is in the fragment: the mode goes into the query before it
        address, _, fragment = url.partition("#")
        page.goto(f"{address}&mode=text#{fragment}", wait_until="commit")
        return page

    try:
        yield _open
    finally:
        for role, lines in logs.items():
            print(f"\n--- console of the {role} page ---\n" + "\n".join(lines))
        for context in contexts:
            context.close()


def _joined(page: Any) -> None:
    page.wait_for_function("() => window.__tc && window.__tc.state === 'joined'", timeout=WAIT_MS)


def _wait_messages(page: Any, count: int) -> None:
    page.wait_for_function(
        "(n) => window.__chat && window.__chat.messages.length >= n", arg=count, timeout=WAIT_MS
    )


def _say(page: Any, text: str) -> None:
    page.fill("#chat-input", text)
    page.click("#chat-send")


def _texts(page: Any) -> list[tuple[int, str, str | None]]:
    return [
        (m["seq"], m["kind"], m["text"])
        for m in page.evaluate("() => JSON.parse(JSON.stringify(window.__chat.messages))")
    ]


def test_r1_text_only_visit_between_two_browsers_with_an_image(
    teleconsult_server: Server, text_room: Callable[[str, str], Any], tmp_path: Path
) -> None:
    doctor = text_room("doctor", teleconsult_server.links["doctor"])
    patient = text_room("patient", teleconsult_server.links["patient"])
    _joined(doctor)
    _joined(patient)
    assert patient.is_hidden("#tiles") and patient.is_hidden("#cam-button")
    assert patient.inner_text(".chat-text-only") == "纯文字问诊：不使用摄像头和麦克风"

    _say(patient, "医生您好，手臂上起了红疹。")
    _wait_messages(doctor, 1)
    assert doctor.inner_text("#chat-list").count("手臂上起了红疹") == 1
    _say(doctor, "请拍一张照片发给我。")
    _wait_messages(patient, 2)

    # An image: pick, preview, upload with progress, then it shows on both pages.
    photo = tmp_path / "rash.jpg"
    photo.write_bytes(jpeg_with_gps(640, 480))
    patient.set_input_files("#chat-file", str(photo))
    patient.wait_for_selector("#chat-preview:not([hidden]) #chat-preview-img", timeout=WAIT_MS)
    patient.fill("#chat-input", "这是照片")
    patient.click("#chat-send-image")
    _wait_messages(doctor, 3)
    doctor.wait_for_function(
        "() => { const img = document.querySelector('li[data-kind=image] img.chat-thumb');"
        " return img && img.dataset.loaded === 'true' && img.naturalWidth > 0; }",
        timeout=WAIT_MS,
    )
    assert patient.evaluate("() => window.__chat.uploadProgress") == 100  # the bar's last step
    assert patient.is_hidden("#chat-preview")  # cleared once sent

    # Unread marker while the doctor's panel is collapsed.
    doctor.click("#chat-collapse")
    _say(patient, "还有点痒。")
    doctor.wait_for_function("() => window.__chat.unread === 1", timeout=WAIT_MS)
    assert doctor.inner_text("#chat-unread") == "1 条新消息"
    doctor.click("#chat-collapse")
    doctor.wait_for_function("() => window.__chat.unread === 0", timeout=WAIT_MS)
    assert doctor.is_hidden("#chat-unread")

    # Unread marker while the doctor reads older messages (scrolled up).
    scrollable = doctor.evaluate(
        "() => { const list = document.querySelector('#chat-list'); list.scrollTop = 0;"
        " return list.scrollHeight > list.clientHeight + 24; }"
    )
    assert scrollable
    _say(patient, "是不是过敏？")
    doctor.wait_for_function("() => window.__chat.unread === 1", timeout=WAIT_MS)
    assert doctor.is_visible("#chat-jump")
    doctor.click("#chat-jump")
    doctor.wait_for_function("() => window.__chat.unread === 0", timeout=WAIT_MS)

    # R43: large text; the English toggle.
    patient.click("#chat-large")
    assert patient.evaluate("() => document.body.classList.contains('large-text')")
    big = patient.evaluate(
        "() => parseFloat(getComputedStyle(document.querySelector('.chat-text')).fontSize)"
    )
    assert big >= 28, big
    patient.click("#lang-toggle")
    assert patient.inner_text("#chat-send") == "Send"

    expected = [
        (1, "text", "医生您好，手臂上起了红疹。"),
        (2, "text", "请拍一张照片发给我。"),
        (3, "image", "这是照片"),
        (4, "text", "还有点痒。"),
        (5, "text", "是不是过敏？"),
    ]
    assert _texts(doctor) == expected
    # A reload (a new page, nothing kept but the link) gets the whole history in order.
    patient.reload(wait_until="commit")
    _joined(patient)
    _wait_messages(patient, 5)
    assert _texts(patient) == expected
    assert patient.evaluate("() => window.__chat.received") == [1, 2, 3, 4, 5]

    for page in (doctor, patient):
        assert page.evaluate("() => window.__gum") == 0  # no camera, no microphone asked for
        assert page.evaluate("() => window.__tc.mediaError") is None
