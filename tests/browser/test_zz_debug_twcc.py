import time
from test_congestion_browser import SAMPLER_JS, _wait_playing, _samples
import pytest
pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

def test_debug(teleconsult_server, open_room):
    server = teleconsult_server
    rooms = [open_room(role, server.links[role]) for role in ("doctor", "patient")]
    for room in rooms:
        _wait_playing(room)
    for room in rooms:
        room.page.evaluate(SAMPLER_JS)
    rooms[0].page.wait_for_timeout(15000)
    for r in _samples(rooms[0]):
        print("doctor", r.get("uplink"), r["width"])
    print(rooms[0].page.evaluate("() => window.__tc.pcs.publish.remoteDescription.sdp"))
    log = server.stdout_path.read_text(errors="replace") + server.stderr_path.read_text(errors="replace")
    for line in log.splitlines():
        if "DEBUG" in line or "layer" in line:
            print(line[:300])
