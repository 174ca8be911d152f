"""The image viewer in Chromium: first image of a 512x512 CT slice and scrolling, native against
JPEG 2000 (issue 15: first image <= 1 s for both; scrolling >= 25 fps after prefetch).

    .venv/bin/python bench/viewer.py [--slices 40] [--repeats 5] [--scroll-s 4] [--noise 10]

Needs root (a network namespace), Debian's ``/usr/bin/chromium`` and Python Playwright, as the
browser tests do (tests/browser/conftest.py). The server (``python -m web serve``) and Chromium
run in a fresh network namespace whose only interface is ``lo``: nothing can reach the network.
A demo visit (``python -m web demo``) gets one study of two series of ``--slices`` 512x512 CT
slices (pydicom-data's 693_UNCI, new UIDs, slices 2.5 mm apart, a bright bar per slice and
Gaussian noise of ``--noise`` stored units, as a real CT has: without it the slice compresses
to 2 KB in JPEG 2000 and its decode costs nothing): series 1 native (Explicit VR Little
Endian), series 2 the same pixels in JPEG 2000 lossless (pylibjpeg-openjpeg), stored as STOW-RS
stores them.

For each series, ``--repeats`` times, the doctor's viewer page opens in a fresh browser context
(empty HTTP cache, a new Cornerstone3D cache); once the page has its series list and its
viewport, the series is clicked:

* first image: from the click (in the page's clock) to the first IMAGE_RENDERED of the viewport
  with a canvas that is not blank (p50 and max; target <= 1000 ms); beside it the page's own
  split (series metadata, first image from the start of the load) and the frames' media type
  (``image/jp2``: the page decodes JPEG 2000 itself, Cornerstone3D's OpenJPEG WebAssembly);
* after ``prefetched()`` (every frame decoded in the cache; the time from the click is printed),
  in the last page: a wheel event over the viewport every 8 ms from a timer in the page (a fast
  spin: more events than frames), towards one end of the stack and back, for ``--scroll-s``
  seconds: slices drawn per second (IMAGE_RENDERED of a new index; target >= 25 fps), with the
  wheel events and animation frames per second, and the Chromium CPU per drawn slice (every
  Chromium process in the namespace; it moves less than the rate on a shared machine).

Each series twice: as the viewer draws here (Chromium has only SwiftShader, a software
rasterizer, so the viewer takes Cornerstone3D's canvas path), and with WebGL forced (the page's
WebGL renderer name stripped of the words that mark a software rasterizer), as it drew before.

Not a test: figures for the notes (timing on a shared machine is noisy; run it twice).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = Path("/usr/bin/chromium")
# as tests/browser/conftest.py launches it
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FIRST_IMAGE_TARGET_MS = 1000.0
SCROLL_TARGET_FPS = 25.0
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *argv], check=check, text=True, capture_output=True)


def cpu_seconds(pids: list[int]) -> float:
    """CPU time so far (user + system, all threads) of ``pids`` (Linux /proc)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def chromium_pids(ns: str) -> list[int]:
    pids = [int(p) for p in ip("netns", "pids", ns).stdout.split()]
    out = []
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if "chrom" in comm:
            out.append(pid)
    return out


def slices(count: int, noise: float) -> list[Any]:
    """``count`` native CT slices of one new series (pixels differ from slice to slice)."""
    import numpy as np
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    found = get_testdata_file("693_UNCI.dcm", download=False)
    if found is None:
        raise SystemExit("pydicom-data's 693_UNCI.dcm is not installed")
    source = dcmread(str(found))
    assert (source.Rows, source.Columns) == (512, 512)
    base = source.pixel_array
    info = np.iinfo(base.dtype)
    low, high = -(1 << (source.BitsStored - 1)), (1 << (source.BitsStored - 1)) - 1
    if not source.PixelRepresentation:
        low, high = 0, (1 << source.BitsStored) - 1
    rng = np.random.default_rng(15)
    out = []
    for number in range(1, count + 1):
        ds = copy.deepcopy(source)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        ds.ImagePositionPatient = [-125.0, -125.0, 2.5 * number]
        ds.SliceLocation = 2.5 * number
        pixels = base.astype(np.float64) + rng.normal(0.0, noise, base.shape)
        row = 20 + (number * 11) % 460
        pixels[row : row + 8, 50:460] = high
        pixels = pixels.round().clip(max(low, info.min), min(high, info.max))
        ds.PixelData = pixels.astype(base.dtype).tobytes()
        out.append(ds)
    return out


def seed(data_dir: Path, visit_id: str, count: int, noise: float) -> dict[str, Any]:
    """One study of two series into the demo visit: native, and the same slices in JPEG 2000."""
    from pydicom.uid import JPEG2000Lossless, generate_uid
    from sqlalchemy import select

    from consult.db import Database
    from consult.imaging.store import Destination, ImagingStore
    from consult.models import Visit
    from web.config import Config

    config = Config(data_dir=data_dir)
    native = slices(count, noise)
    study = generate_uid()
    series = {"native": generate_uid(), "JPEG 2000": generate_uid()}
    sizes: dict[str, int] = {}

    async def run() -> None:
        db = Database(config.database, field_key=config.field_secret())
        await db.start()
        store = ImagingStore(db, config.imaging)
        await store.start()
        try:
            async with db.session() as session:
                visit = (await session.scalars(select(Visit).where(Visit.id == visit_id))).one()
            dest = Destination(
                institution_id=visit.institution_id,
                visit_id=visit.id,
                patient_id=visit.patient_record_id,
            )
            for number, (name, uid) in enumerate(series.items(), start=1):
                sizes[name] = 0
                for original in native:
                    ds = copy.deepcopy(original)
                    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, uid
                    ds.SeriesNumber, ds.SeriesDescription = number, name
                    ds.SOPInstanceUID = generate_uid()
                    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                    if name != "native":
                        ds.compress(JPEG2000Lossless)
                    sizes[name] += len(ds.PixelData)
                    path = store.new_incoming()
                    ds.save_as(path, enforce_file_format=True)
                    await store.ingest(path, dest, None)
        finally:
            await store.close()
            await db.close()

    asyncio.run(run())
    return {"study": study, "series": series, "sizes": sizes}


def wait(page: Any, expression: str, timeout_s: float = 30.0, arg: Any = None) -> Any:
    """Poll ``expression`` (a JS function of ``arg``) in ``page`` until truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(expression, arg)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(expression)
        time.sleep(0.02)


# In the page: the time of the click on a series button, and every drawn image of the viewport
# (its stack index) in the page's clock; the first drawn image that is not blank.
INSTRUMENT = """async () => {
  const { core } = await import('/vendor/viewer/cornerstone.js');
  const viewport = () => core.getRenderingEngine('tc-engine')?.getViewports()[0];
  const index = () => viewport()?.getCurrentImageIdIndex();
  const bench = (window.__bench = { click: null, draws: [], first: null, index });
  const notBlank = () => {
    const c = document.querySelector('#viewport canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let i = 0; i < d.length; i += 16) if (d[i] > 20) n++; return n > 500;
  };
  document.addEventListener('click', (e) => {
    if (e.target.closest('.series-item') && bench.click === null) bench.click = performance.now();
  }, { capture: true });
  document.querySelector('#viewport').addEventListener(core.Enums.Events.IMAGE_RENDERED, () => {
    const at = performance.now();
    bench.draws.push({ at, index: index() ?? null });
    if (bench.first === null && bench.click !== null && notBlank()) bench.first = at;
  });
}"""

# In the page: a wheel event over the viewport every ``every`` ms, from a timer (as a mouse's
# wheel events come, between animation frames; one sent from inside a requestAnimationFrame
# callback would show a render every other frame: Cornerstone3D asks for its render frame after
# the one that runs), towards the end of the stack, then back; the animation frames counted
# beside. A positive deltaY steps back in Cornerstone3D's stack: the sign follows the index.
SCROLL = """async ({ ms, count, every }) => {
  const el = document.querySelector('#viewport');
  const r = el.getBoundingClientRect();
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  const bench = window.__bench;
  bench.draws = [];
  let sent = 0, frames = 0, toward = 1, running = true;
  const frame = () => { frames++; if (running) requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
  const t0 = performance.now();
  await new Promise((done) => {
    const step = () => {
      if (performance.now() - t0 >= ms) return done();
      const index = bench.index() ?? 0;
      if (index >= count - 1) toward = -1;
      else if (index <= 0) toward = 1;
      el.dispatchEvent(new WheelEvent('wheel', { deltaY: -120 * toward, deltaMode: 0,
        clientX: x, clientY: y, bubbles: true, cancelable: true }));
      sent++;
      setTimeout(step, every);
    };
    step();
  });
  running = false;
  const t1 = performance.now();
  let shown = 0, last = null;
  for (const d of bench.draws) {
    if (d.at >= t0 && d.at <= t1 && d.index !== last) { shown++; last = d.index; }
  }
  const s = (t1 - t0) / 1000;
  return { fps: shown / s, events: sent / s, frames: frames / s, end: bench.index() };
}"""


def open_viewer(context: Any, url: str, logs: list[str], frames: set[str]) -> Any:
    """The viewer page; ``frames``: the content types of the WADO-RS frame answers it gets."""
    page = context.new_page()
    page.on(
        "response",
        lambda r: (
            frames.add(r.headers.get("content-type", "").split("boundary")[0])
            if "/frames/" in r.url
            else None
        ),
    )
    page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: logs.append(f"pageerror: {e}"))
    page.goto(url, wait_until="commit")
    return page


# Before any script of the page: WebGL's renderer name without the words by which Cornerstone3D
# knows a software rasterizer, so that the viewer draws with WebGL as it did before it chose
# its canvas path for a software rasterizer (the "WebGL" rows).
HIDE_SOFTWARE_RASTERIZER = """(() => {
  const words = /swiftshader|llvmpipe|softpipe|software|microsoft basic render/gi;
  for (const C of [window.WebGLRenderingContext, window.WebGL2RenderingContext]) {
    if (!C) continue;
    const get = C.prototype.getParameter;
    C.prototype.getParameter = function (p) {
      const v = get.call(this, p);
      return p === 0x9246 && typeof v === 'string' ? v.replace(words, 'bench') : v;
    };
  }
})();"""


def first_image(
    browser: Any, url: str, series_uid: str, timeout_s: float, webgl: bool
) -> tuple[dict[str, Any], Any, Any]:
    """Open the viewer in a fresh context, click the series: the figures, the page, context."""
    logs: list[str] = []
    frames: set[str] = set()
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    if webgl:
        context.add_init_script(HIDE_SOFTWARE_RASTERIZER)
    page = open_viewer(context, url, logs, frames)
    button = page.locator(f'.series-item[data-series="{series_uid}"]')
    button.wait_for(timeout=timeout_s * 1000)
    # the viewport exists once Cornerstone3D (loaded while the list fills) is started
    wait(page, "() => document.querySelector('#viewport canvas') && window.__viewer.ready")
    page.evaluate(INSTRUMENT)
    button.click()
    try:
        wait(page, "() => window.__viewer.loaded", timeout_s)
        wait(page, "() => window.__bench.first !== null", timeout_s)
    except TimeoutError:
        errors = page.evaluate("() => window.__viewer.errors")
        raise SystemExit(
            f"no image drawn in {timeout_s:.0f} s (page errors {errors}):\n" + "\n".join(logs[-20:])
        ) from None
    bench = page.evaluate("() => window.__bench")
    timings = page.evaluate("() => window.__viewer.timings()")
    figures = {
        "first_ms": bench["first"] - bench["click"],
        "rendering": page.evaluate("() => window.__viewer.rendering()"),
        "metadata_ms": timings["metadata_ms"],
        "load_ms": timings["first_image_ms"],
        "click": bench["click"],
        "logs": logs,
        "frames": frames,
    }
    return figures, page, context


def scroll_rate(page: Any, count: int, seconds: float, ns: str) -> dict[str, float]:
    """Spin the wheel over the viewport for ``seconds``: new slices drawn per second, and the
    Chromium CPU per drawn slice."""
    pids = chromium_pids(ns)
    cpu0 = cpu_seconds(pids)
    got: dict[str, float] = page.evaluate(
        SCROLL, {"ms": seconds * 1000, "count": count, "every": 8}
    )
    cpu = cpu_seconds(pids) - cpu0
    got["cpu_ms"] = cpu / max(got["fps"] * seconds, 1) * 1000
    return got


def measure(
    browser: Any, url: str, name: str, series_uid: str, webgl: bool, ns: str, args: Any
) -> None:
    """First image ``args.repeats`` times, then scrolling in the last page; printed."""
    runs = []
    for repeat in range(args.repeats):
        figures, page, context = first_image(browser, url, series_uid, args.timeout, webgl)
        runs.append(figures)
        if repeat < args.repeats - 1:
            context.close()
    try:
        drawn = {"cpu": "canvas (CPU)", "gpu": "WebGL"}.get(runs[-1]["rendering"], "?")
        label = f"{name}, {drawn}{' forced' if webgl else ''}:"
        firsts = sorted(r["first_ms"] for r in runs)
        verdict = "ok" if firsts[-1] <= FIRST_IMAGE_TARGET_MS else "MISSED"
        print(
            f"{label} first image p50 {statistics.median(firsts):.0f} ms, max {firsts[-1]:.0f} ms"
            f" after the click, {len(firsts)} fresh pages (target <= "
            f"{FIRST_IMAGE_TARGET_MS:.0f}: {verdict}); in the page: metadata p50 "
            f"{statistics.median(r['metadata_ms'] for r in runs):.0f} ms, first image from the "
            f"load's start p50 {statistics.median(r['load_ms'] for r in runs):.0f} ms; frames "
            f"sent as {', '.join(sorted(t.split(';')[1].strip() for t in runs[-1]['frames']))}"
        )
        try:
            wait(page, "() => window.__viewer.prefetched()", args.timeout)
        except TimeoutError:
            print(f"{label} the series was not prefetched in {args.timeout:.0f} s")
            print("\n".join(runs[-1]["logs"][-20:]))
            return
        since = page.evaluate("() => performance.now()") - runs[-1]["click"]
        scroll = scroll_rate(page, args.slices, args.scroll_s, ns)
        verdict = "ok" if scroll["fps"] >= SCROLL_TARGET_FPS else "MISSED"
        print(
            f"{label} all {args.slices} decoded <= {since:.0f} ms after the click; scrolling "
            f"{scroll['fps']:.1f} slices drawn/s (target >= {SCROLL_TARGET_FPS:.0f}: {verdict}; "
            f"{scroll['events']:.0f} wheel events/s, {scroll['frames']:.0f} animation frames/s),"
            f" Chromium CPU {scroll['cpu_ms']:.1f} ms a drawn slice"
        )
        errors = page.evaluate("() => window.__viewer.errors")
        if errors:
            print(f"{label} page errors {errors}")
    finally:
        context.close()


def main(args: argparse.Namespace) -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise SystemExit("needs root and iproute2 (a network namespace)")
    if not CHROMIUM.exists():
        raise SystemExit(f"Debian chromium not found at {CHROMIUM}")
    if not (ROOT / "build" / "viewer" / "cornerstone.js").is_file():
        raise SystemExit("the viewer bundle is missing: run `node scripts/build-viewer.mjs`")
    from playwright.sync_api import sync_playwright

    print(f"load at start: {load()}")
    tmp = Path(tempfile.mkdtemp(prefix="viewer-bench-"))
    ns = f"tc-vb-{secrets.token_hex(3)}"
    ip("netns", "add", ns)
    server: subprocess.Popen[bytes] | None = None
    try:
        ip("-n", ns, "link", "set", "lo", "up")
        data_dir = tmp / "data"
        data_dir.mkdir()
        port = 20000 + secrets.randbelow(40000)
        base_url = f"http://127.0.0.1:{port}"
        web = [sys.executable, "-m", "web"]
        demo = subprocess.run(
            [*web, "demo", "--data-dir", str(data_dir), "--base-url", base_url, "--json"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        info = json.loads(demo.stdout.strip().splitlines()[-1])
        t0 = time.monotonic()
        seeded = seed(data_dir, info["visit_id"], args.slices, args.noise)
        sizes = ", ".join(
            f"{name} {size / args.slices / 1024:.0f} KB" for name, size in seeded["sizes"].items()
        )
        print(
            f"seeded {args.slices} slices twice in {time.monotonic() - t0:.1f} s "
            f"(pixel data a slice: {sizes}; noise sigma {args.noise:g})"
        )
        serve = ["serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
        with (tmp / "server.log").open("wb") as log:
            server = subprocess.Popen(
                ["ip", "netns", "exec", ns, *web, *serve, "--ice-address", "127.0.0.1"],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            curl = ["curl", "-s", "-o", "/dev/null", "-m", "1", "-w", "%{http_code}"]
            probe = subprocess.run(
                ["ip", "netns", "exec", ns, *curl, base_url + "/api/v1/health"],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.stdout.strip() == "200":
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start:\n" + (tmp / "server.log").read_text())
            time.sleep(0.1)
        url = info["links"]["doctor"].replace("/room?", "/viewer?", 1)

        wrapper = tmp / "chromium-in-netns"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(wrapper), headless=True, args=CHROMIUM_ARGS
            )
            try:
                for name, series_uid in seeded["series"].items():
                    for webgl in (False, True):
                        measure(browser, url, name, series_uid, webgl, ns, args)
            finally:
                browser.close()
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        for pid in ip("netns", "pids", ns, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        ip("netns", "delete", ns, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"load at end: {load()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scroll-s", type=float, default=4.0)
    parser.add_argument("--noise", type=float, default=10.0, help="noise sigma, stored units")
    parser.add_argument("--timeout", type=float, default=30.0)
    main(parser.parse_args())
