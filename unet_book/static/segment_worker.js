// The network's side of "your own image" (chapter 8): a module Web Worker that runs the
// exported tile network (unet_book.browser_model: model.onnx, model.json) over every tile of
// a prepared image with onnxruntime-web (WebAssembly) and stitches the logits as
// unet_core.tiling.predict_tiled does (overlap_tile.js), so that the page stays responsive.
//
// Messages in:  {type: "run", id, ortUrl, wasmBase, modelUrl, manifest, image, height, width}
//               image: Float32Array (C, H, W) of the prepared input (segment.js: prepareInput)
// Messages out: {type: "status", id, text}            loading the runtime or the model
//               {type: "progress", id, done, total}   after each tile
//               {type: "done", id, prob, ms, threads, tiles}   prob: Float32Array (H, W)
//               {type: "error", id, message}
// Cancelling is the page's: it terminates this worker (a tile in flight cannot be stopped
// otherwise) and starts a fresh one for the next image.
//
// The runtime and the model are fetched on the first "run" message, never before: a reader
// who does not segment an image downloads neither.

import { Stitcher, probability, tileInput, tiles } from "./overlap_tile.js";

let ort = null;
const sessions = new Map(); // modelUrl -> Promise<InferenceSession>

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function runtime(ortUrl, wasmBase) {
  if (!ort) {
    ort = await import(ortUrl);
    ort.env.wasm.wasmPaths = wasmBase;
    // several threads need SharedArrayBuffer, which only a cross-origin isolated page has
    ort.env.wasm.numThreads = self.crossOriginIsolated
      ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
    ort.env.wasm.proxy = false;
  }
  return ort;
}

async function session(modelUrl, manifest) {
  if (!sessions.has(modelUrl)) {
    sessions.set(modelUrl, (async () => {
      const response = await fetch(modelUrl);
      if (!response.ok) throw new Error(`${manifest.file}: HTTP ${response.status}`);
      const bytes = await response.arrayBuffer();
      const digest = hex(await crypto.subtle.digest("SHA-256", bytes));
      if (digest !== manifest.sha256) {
        throw new Error(`${manifest.file}: its SHA-256 is not the one model.json records ` +
          "(a stale copy in the browser's cache? reload the page)");
      }
      return ort.InferenceSession.create(new Uint8Array(bytes),
        { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    })());
  }
  try {
    return await sessions.get(modelUrl);
  } catch (err) {
    sessions.delete(modelUrl);
    throw err;
  }
}

async function run(message) {
  const { id, ortUrl, wasmBase, modelUrl, manifest, image, height, width } = message;
  self.postMessage({ type: "status", id, text: "loading the runtime and the model ..." });
  await runtime(ortUrl, wasmBase);
  const net = await session(modelUrl, manifest);
  const t0 = performance.now();
  const channels = manifest.in_channels;
  const classes = manifest.probability === "softmax" ? 2 : 1;
  const { positions } = tiles(manifest, height, width);
  const stitcher = new Stitcher(manifest, classes, height, width);
  const shape = [1, channels, manifest.tile, manifest.tile];
  for (let i = 0; i < positions.length; i++) {
    const { y, x } = positions[i];
    const input = new ort.Tensor("float32",
      tileInput(image, channels, height, width, y, x, manifest.tile), shape);
    const outputs = await net.run({ [manifest.input]: input });
    stitcher.add(y, x, outputs[manifest.output].data);
    self.postMessage({ type: "progress", id, done: i + 1, total: positions.length });
  }
  const prob = probability(stitcher.result(), manifest.probability, height * width);
  self.postMessage({ type: "done", id, prob, ms: performance.now() - t0,
    threads: ort.env.wasm.numThreads, tiles: positions.length }, [prob.buffer]);
}

self.onmessage = (event) => {
  if (event.data?.type !== "run") return;
  run(event.data).catch((err) => self.postMessage({ type: "error", id: event.data.id,
    message: err?.message ?? String(err) }));
};
