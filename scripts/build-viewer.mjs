#!/usr/bin/env node
// Bundle Cornerstone3D for the browser (docs/viewer.md): web/viewer_bundle/entry.js and the DICOM
// decode worker into build/viewer/, plus the WebAssembly codecs into build/viewer/wasm/. The
// server serves build/viewer/ at /vendor/viewer/. Output is not committed; scripts/setup runs this.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = process.argv[2] ? resolve(process.argv[2]) : join(root, "build", "viewer");
const require = createRequire(join(root, "package.json"));
const loader = dirname(require.resolve("@cornerstonejs/dicom-image-loader"));

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "wasm"), { recursive: true });

const started = Date.now();
await build({
  entryPoints: {
    cornerstone: join(root, "web", "viewer_bundle", "entry.js"),
    // init.js starts it as new URL("./decodeImageFrameWorker.js", import.meta.url): beside the bundle
    decodeImageFrameWorker: join(loader, "decodeImageFrameWorker.js"),
  },
  outdir: out,
  bundle: true,
  format: "esm",
  splitting: false,
  minify: true,
  sourcemap: false,
  target: ["chrome110", "firefox110", "safari16"],
  platform: "browser",
  // node built-ins that the codecs' emscripten glue names but never reaches in a browser; "events"
  // is npm's browser EventEmitter (a dependency), "url" a shim of the one function used
  external: ["fs", "path", "module", "crypto", "worker_threads"],
  alias: { url: join(root, "web", "viewer_bundle", "shims", "url.js") },
  nodePaths: [join(root, "node_modules")],
  logLevel: "warning",
  legalComments: "linked",
});

// The codecs' WebAssembly, found through the worker's decodeConfig.wasmBasePath.
const wasm = {
  "@cornerstonejs/codec-openjpeg/decodewasm": "openjpegwasm_decode.wasm",
  "@cornerstonejs/codec-charls/decodewasm": "charlswasm_decode.wasm",
  "@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasm": "libjpegturbowasm_decode.wasm",
  "@cornerstonejs/codec-openjph/wasm": "openjphjs.wasm",
};
const copied = [];
for (const [spec, name] of Object.entries(wasm)) {
  try {
    copyFileSync(require.resolve(spec, { paths: [loader] }), join(out, "wasm", name));
    copied.push(name);
  } catch (err) {
    console.warn(`build-viewer: ${spec} not copied (${err.code || err.message})`);
  }
}
writeFileSync(
  join(out, "build.json"),
  JSON.stringify({ built_at: new Date().toISOString(), wasm: copied }, null, 2) + "\n",
);
console.log(`build-viewer: ${out} in ${Date.now() - started} ms`);
