// The one bundle of the browser client: Cornerstone3D (core, tools, DICOM image loader), which
// cannot be served from node_modules as ES modules (CommonJS dependencies, bare imports, a decode
// worker and WebAssembly codecs). scripts/build-viewer.mjs bundles this file with esbuild during
// setup; the output is not committed. Only third-party code belongs here: the viewer itself is
// plain ES modules in web/static (viewer.js, ecg.js, review.js).
export * as core from "@cornerstonejs/core";
export * as tools from "@cornerstonejs/tools";
export { default as dicomImageLoader } from "@cornerstonejs/dicom-image-loader";
