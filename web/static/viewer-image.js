// The image viewport: Cornerstone3D (bundled at /vendor/viewer/ by scripts/build-viewer.mjs) on
// our DICOMweb. One stack viewport per page: a series' frames in instance order, window/level
// (left button) with CT presets, pan (middle), zoom (right), scroll (wheel, arrow keys), cine,
// and measurements (length and angle in mm, rectangle/ellipse ROI and probe in HU for CT).
//
// The view is described in world millimetres (camera focal point, position, view up, parallel
// scale) plus the VOI range and the slice index, so another screen of another size shows the same
// anatomy (docs/review.md); `getView()` and `applyView()` are what the review sync sends and
// applies, `getAnnotations()` and `setAnnotations()` the measurements.

import { core, dicomImageLoader, tools } from "/vendor/viewer/cornerstone.js";
import { DICOMWEB, TAG, value } from "./dicomweb.js";

export const CT_PRESETS = {
  soft_tissue: { width: 400, center: 40 },
  lung: { width: 1500, center: -600 },
  bone: { width: 1800, center: 400 },
  brain: { width: 80, center: 40 },
  abdomen: { width: 350, center: 50 },
};

const MEASURE_TOOLS = {
  length: tools.LengthTool,
  angle: tools.AngleTool,
  rectangle: tools.RectangleROITool,
  ellipse: tools.EllipticalROITool,
  probe: tools.ProbeTool,
};
const SYNCED_TOOL_NAMES = new Set(Object.values(MEASURE_TOOLS).map((Tool) => Tool.toolName));
const ENGINE_ID = "tc-engine";
const GROUP_ID = "tc-tools";

let started = null;

/** How this page draws images, once Cornerstone3D is started: "gpu" (WebGL) or "cpu" (its
 * canvas path). */
export let rendering = null;

/** Start Cornerstone3D once per page, with `bearer` on every DICOMweb request it makes. */
export function startCornerstone(bearer) {
  if (!started) {
    started = (async () => {
      await core.init();
      // WebGL on a software rasterizer (SwiftShader, llvmpipe: a PC or a remote desktop
      // without a usable GPU) costs ~20 ms of the main thread a 512x512 slice, with long frames
      // under load: scrolling stays near 25-35 fps. Cornerstone3D's canvas path draws the same
      // stack at the display's rate for a third of the CPU (bench/viewer.py). Cornerstone3D
      // itself falls back to it only when there is no WebGL at all.
      if (core.getRenderingCapabilities().softwareRasterizer) core.setUseCPURendering(true);
      rendering = core.getShouldUseCPURendering() ? "cpu" : "gpu";
      await tools.init();
      dicomImageLoader.init({
        maxWebWorkers: 1,
        wasmBasePath: "/vendor/viewer/wasm/",
        beforeSend: () => (bearer ? { Authorization: `Bearer ${bearer}` } : {}),
      });
      for (const Tool of [
        tools.WindowLevelTool,
        tools.PanTool,
        tools.ZoomTool,
        tools.StackScrollTool,
        ...Object.values(MEASURE_TOOLS),
      ]) {
        tools.addTool(Tool);
      }
    })();
  }
  return started;
}

const vec = (v) => [Number(v[0]), Number(v[1]), Number(v[2])];

export class ImageViewer {
  /** `element`: an empty block element with a size; `onChange(kind)` after every local change
   * of the view ("view") or of the measurements ("annotations"). */
  constructor(element, { onChange = () => {}, onPointer = () => {} } = {}) {
    this.element = element;
    this.onChange = onChange;
    this.onPointer = onPointer;
    this.viewportId = `tc-stack-${Math.random().toString(36).slice(2, 8)}`;
    this.engine = null;
    this.viewport = null;
    this.imageIds = [];
    this.keys = []; // "instanceUid/frame" per stack index
    this.series = null;
    this.modality = "";
    this.applying = 0; // > 0 while a remote view is applied: those changes are not ours
    this.interactive = true;
    this.tool = "windowlevel";
    this.cine = false;
    this.pointerEl = document.createElement("div");
    this.pointerEl.className = "review-pointer";
    this.pointerEl.hidden = true;
  }

  async open() {
    this.engine = core.getRenderingEngine(ENGINE_ID) ?? new core.RenderingEngine(ENGINE_ID);
    this.engine.enableElement({
      viewportId: this.viewportId,
      type: core.Enums.ViewportType.STACK,
      element: this.element,
      defaultOptions: { background: [0, 0, 0] },
    });
    this.viewport = this.engine.getViewport(this.viewportId);
    this.element.style.position = "relative";
    this.element.appendChild(this.pointerEl);
    this.element.addEventListener("contextmenu", (e) => e.preventDefault());
    // the page may enable the viewport while its panel is hidden: size it when it shows
    new ResizeObserver(() => this.resize()).observe(this.element);
    let group = tools.ToolGroupManager.getToolGroup(GROUP_ID);
    if (!group) {
      group = tools.ToolGroupManager.createToolGroup(GROUP_ID);
      for (const name of [
        tools.WindowLevelTool.toolName,
        tools.PanTool.toolName,
        tools.ZoomTool.toolName,
        tools.StackScrollTool.toolName,
        ...SYNCED_TOOL_NAMES,
      ]) {
        group.addTool(name);
      }
    }
    group.addViewport(this.viewportId, ENGINE_ID);
    this.group = group;
    this.setInteractive(true);

    const { Events } = core.Enums;
    const changed = () => {
      if (!this.applying) this.onChange("view");
    };
    this.element.addEventListener(Events.CAMERA_MODIFIED, changed);
    this.element.addEventListener(Events.VOI_MODIFIED, changed);
    this.element.addEventListener(Events.STACK_NEW_IMAGE, changed);
    const annotationsChanged = (event) => {
      const name = event.detail?.annotation?.metadata?.toolName;
      if (!this.applying && SYNCED_TOOL_NAMES.has(name)) this.onChange("annotations");
    };
    const TE = tools.Enums.Events;
    for (const name of [TE.ANNOTATION_COMPLETED, TE.ANNOTATION_MODIFIED, TE.ANNOTATION_REMOVED]) {
      core.eventTarget.addEventListener(name, annotationsChanged);
    }
    this.element.addEventListener("pointermove", (event) => {
      if (!this.interactive || !this.viewport || !this.imageIds.length) return;
      const rect = this.element.getBoundingClientRect();
      const world = this.viewport.canvasToWorld([event.clientX - rect.left, event.clientY - rect.top]);
      this.onPointer(vec(world));
    });
    this.element.addEventListener("pointerleave", () => {
      if (this.interactive) this.onPointer(null);
    });
    this.element.tabIndex = 0;
    this.element.addEventListener("keydown", (event) => {
      if (!this.interactive) return;
      if (event.key === "ArrowDown" || event.key === "ArrowRight") this.scroll(1);
      else if (event.key === "ArrowUp" || event.key === "ArrowLeft") this.scroll(-1);
      else return;
      event.preventDefault();
    });
  }

  /** Whether the element has a size (its panel is shown). */
  get shown() {
    return this.element.clientWidth > 0 && this.element.clientHeight > 0;
  }

  /** Fit the canvas to its element again (after the element was hidden or changed size). */
  resize() {
    // a hidden element is left as it was: on the canvas (CPU) path a size of 0 makes every
    // world position NaN (the camera, the annotations' handles)
    if (this.shown) this.engine?.resize(true, true);
  }

  /** Load a series (WADO-RS metadata, then frames as the viewport needs them). */
  async loadSeries(client, study, series, index = 0) {
    const started = performance.now();
    const metadata = await client.seriesMetadata(study, series);
    this.timings = { metadata_ms: performance.now() - started };
    metadata.sort((a, b) => (value(a, TAG.instanceNumber) ?? 0) - (value(b, TAG.instanceNumber) ?? 0));
    const base = `${window.location.origin}${DICOMWEB}/studies/${study}/series/${series}/instances`;
    const imageIds = [];
    const keys = [];
    for (const instance of metadata) {
      const uid = value(instance, TAG.instanceUid);
      const frames = Number(value(instance, TAG.frames) ?? 1) || 1;
      if (!instance["7FE00010"]) continue; // no pixel data (a waveform, a report)
      for (let frame = 1; frame <= frames; frame++) {
        const imageId = `wadors:${base}/${uid}/frames/${frame}`;
        dicomImageLoader.wadors.metaDataManager.add(imageId, instance);
        imageIds.push(imageId);
        keys.push(`${uid}/${frame}`);
      }
    }
    if (!imageIds.length) throw new Error("no_images");
    this.stopCine();
    this.imageIds = imageIds;
    this.keys = keys;
    this.series = { study, series };
    this.modality = String(value(metadata[0], TAG.modality) ?? "");
    this.frameOfReference = value(metadata[0], "00200052");
    tools.annotation.state.removeAllAnnotations();
    this.applying++;
    try {
      await this.viewport.setStack(imageIds, Math.min(index, imageIds.length - 1));
      this.viewport.render();
      this.timings.first_image_ms = performance.now() - started;
      // fetch and decode the rest of the series now: scrolling (ours or the presenter's) then
      // draws from the cache instead of waiting for the network
      tools.utilities.stackPrefetch.enable(this.element);
    } finally {
      this.applying--;
    }
    this.onChange("view");
    return imageIds.length;
  }

  /** Whether every frame of the series is decoded in the cache (prefetch done). */
  prefetched() {
    return this.imageIds.length > 0 && this.imageIds.every((id) => core.cache.getImage(id));
  }

  get count() {
    return this.imageIds.length;
  }

  get index() {
    return this.viewport?.getCurrentImageIdIndex() ?? 0;
  }

  async scroll(delta) {
    const next = Math.max(0, Math.min(this.count - 1, this.index + delta));
    if (next !== this.index) await this.viewport.setImageIdIndex(next);
  }

  async goTo(index) {
    if (index >= 0 && index < this.count && index !== this.index) {
      await this.viewport.setImageIdIndex(index);
    }
  }

  /** Which tool the left button drives: "windowlevel", "pan", "zoom" or a measurement. */
  setTool(name) {
    this.tool = name;
    this.setInteractive(this.interactive);
  }

  /** A follower's viewport takes no input: the presenter drives it. */
  setInteractive(on) {
    this.interactive = on;
    const group = this.group;
    if (!group) return;
    const { MouseBindings } = tools.Enums;
    const all = [
      tools.WindowLevelTool.toolName,
      tools.PanTool.toolName,
      tools.ZoomTool.toolName,
      tools.StackScrollTool.toolName,
      ...SYNCED_TOOL_NAMES,
    ];
    for (const name of all) group.setToolPassive(name);
    if (!on) {
      for (const name of all) group.setToolDisabled(name);
      for (const name of SYNCED_TOOL_NAMES) group.setToolEnabled(name); // drawn, not editable
      return;
    }
    const primary =
      this.tool === "pan"
        ? tools.PanTool.toolName
        : this.tool === "zoom"
          ? tools.ZoomTool.toolName
          : MEASURE_TOOLS[this.tool]?.toolName ?? tools.WindowLevelTool.toolName;
    group.setToolActive(primary, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    if (primary !== tools.PanTool.toolName) {
      group.setToolActive(tools.PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
    }
    if (primary !== tools.ZoomTool.toolName) {
      group.setToolActive(tools.ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
    }
    group.setToolActive(tools.StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
  }

  setPreset(name) {
    const preset = CT_PRESETS[name];
    if (!preset) return;
    this.setVoi(preset.center - preset.width / 2, preset.center + preset.width / 2);
  }

  setVoi(lower, upper) {
    this.viewport.setProperties({ voiRange: { lower, upper } });
    this.viewport.render();
  }

  invert() {
    const { invert } = this.viewport.getProperties();
    this.viewport.setProperties({ invert: !invert });
    this.viewport.render();
    this.onChange("view");
  }

  reset() {
    this.viewport.resetCamera();
    this.viewport.resetProperties();
    this.viewport.render();
  }

  toggleCine(fps = 15) {
    if (this.cine) {
      this.stopCine();
      return false;
    }
    tools.utilities.cine.playClip(this.element, { framesPerSecond: fps, loop: true });
    this.cine = true;
    return true;
  }

  stopCine() {
    if (this.cine) tools.utilities.cine.stopClip(this.element);
    this.cine = false;
  }

  /** Window width/center of the current VOI (for the readout). */
  windowLevel() {
    const range = this.viewport?.getProperties()?.voiRange;
    if (!range) return null;
    return { width: range.upper - range.lower, center: (range.upper + range.lower) / 2 };
  }

  /** The view in world millimetres: what the review sends. */
  getView() {
    if (!this.viewport || !this.imageIds.length || !this.shown) return null;
    const camera = this.viewport.getCamera();
    const props = this.viewport.getProperties();
    const view = {
      series: this.series.series,
      index: this.index,
      camera: {
        focal_point: vec(camera.focalPoint),
        position: vec(camera.position),
        view_up: vec(camera.viewUp),
        parallel_scale: Number(camera.parallelScale),
      },
      invert: Boolean(props.invert),
    };
    if (props.voiRange && props.voiRange.upper > props.voiRange.lower) {
      view.voi = { lower: props.voiRange.lower, upper: props.voiRange.upper };
    }
    const { focal_point, position, view_up, parallel_scale } = view.camera;
    if (![...focal_point, ...position, ...view_up, parallel_scale].every(Number.isFinite)) return null;
    return view;
  }

  /** Show the presenter's view (fields absent stay as they are). */
  async applyView(view) {
    if (!this.viewport || !this.imageIds.length) return;
    this.applying++;
    try {
      if (Number.isInteger(view.index) && view.index !== this.index && view.index < this.count) {
        await this.viewport.setImageIdIndex(view.index);
      }
      if (view.camera) {
        // the position from this viewport's own distance along the view direction: a presenter
        // drawing on the CPU sends a position of [0, 0, 0], which a WebGL viewport would take
        // for another direction of projection (the view is parallel: the distance shows nothing)
        const own = this.viewport.getCamera();
        const focal = view.camera.focal_point;
        const position =
          own.position && own.focalPoint
            ? own.position.map((p, i) => focal[i] + Number(p) - Number(own.focalPoint[i]))
            : view.camera.position;
        this.viewport.setCamera({
          focalPoint: focal,
          position,
          viewUp: view.camera.view_up,
          parallelScale: view.camera.parallel_scale,
        });
      }
      const props = {};
      if (view.voi) props.voiRange = { lower: view.voi.lower, upper: view.voi.upper };
      if (typeof view.invert === "boolean") props.invert = view.invert;
      if (Object.keys(props).length) this.viewport.setProperties(props);
      if ("pointer" in view) this.showPointer(view.pointer);
      this.viewport.render();
    } finally {
      this.applying--;
    }
  }

  showPointer(world) {
    if (!world || !this.viewport) {
      this.pointerEl.hidden = true;
      return;
    }
    const [x, y] = this.viewport.worldToCanvas(world);
    this.pointerEl.style.left = `${x}px`;
    this.pointerEl.style.top = `${y}px`;
    this.pointerEl.hidden = false;
  }

  /** The measurements on this series, in world millimetres. */
  getAnnotations() {
    const out = [];
    const all = tools.annotation.state.getAllAnnotations();
    for (const a of all) {
      const tool = a.metadata?.toolName;
      if (!SYNCED_TOOL_NAMES.has(tool)) continue;
      const index = this.imageIds.indexOf(a.metadata.referencedImageId);
      if (index < 0) continue;
      const [instance, frame] = this.keys[index].split("/");
      out.push({
        uid: String(a.annotationUID).slice(0, 64),
        tool,
        instance,
        frame: Number(frame),
        points: a.data.handles.points.map(vec),
      });
    }
    return out;
  }

  /** Replace the measurements with the presenter's. */
  setAnnotations(list) {
    if (!this.viewport) return;
    this.applying++;
    try {
      tools.annotation.state.removeAllAnnotations();
      const classes = Object.fromEntries(Object.values(MEASURE_TOOLS).map((T) => [T.toolName, T]));
      for (const item of list) {
        const index = this.keys.indexOf(`${item.instance}/${item.frame}`);
        const Tool = classes[item.tool];
        if (index < 0 || !Tool) continue;
        // the frame of reference from the metadata: a late joiner hydrates before its first
        // image is drawn, when the viewport does not know it yet
        const options = { annotationUID: item.uid, referencedImageId: this.imageIds[index] };
        if (this.frameOfReference) options.FrameOfReferenceUID = this.frameOfReference;
        Tool.hydrate(this.viewportId, item.points, options);
      }
      this.viewport.render();
    } finally {
      this.applying--;
    }
  }

  /** The measurements' figures as the tools computed them (for the list beside the image). */
  measurementTexts() {
    const texts = [];
    for (const a of tools.annotation.state.getAllAnnotations()) {
      if (!SYNCED_TOOL_NAMES.has(a.metadata?.toolName)) continue;
      const stats = Object.values(a.data?.cachedStats ?? {})[0] ?? {};
      texts.push({ uid: a.annotationUID, tool: a.metadata.toolName, stats });
    }
    return texts;
  }

  /** The canvas (for a pixel comparison in tests, and snapshots). */
  get canvas() {
    return this.element.querySelector("canvas");
  }

  close() {
    this.stopCine();
    this.engine?.disableElement(this.viewportId);
    this.viewport = null;
  }
}
