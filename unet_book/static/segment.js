// "Your own image" (chapter 8): the book's trained U-Net segments an image the reader picks,
// in the page, with the paper's overlap-tile inference, and hands the result to the mask
// explorer (mask_explorer.js). Nothing leaves the reader's machine.
//
//   * reading: PNG and TIFF with image_codec.js (exact, 16-bit included: a browser's own
//     decoder reduces 16-bit PNGs to 8 bits and does not read TIFF), every other format the
//     browser decodes (JPEG, GIF, WebP, BMP) with createImageBitmap, colour management off;
//   * preparing: as unet_core.data.imageio.read_image, then unet_train.predict.to_model_input
//     (alpha dropped; 8-bit values times float32(1 / 255), 16-bit ones / 65535; the channels
//     the model was trained on), in float32 like NumPy;
//   * the network: segment_worker.js, a Web Worker running onnxruntime-web over the tiles of
//     overlap_tile.js's plan (the plan of unet_core.tiling.predict_tiled), with a progress
//     bar and a cancel button; no test-time augmentation;
//   * the result: the explorer's data (probabilities as its 16-bit levels, the labels of the
//     ground-truth and FOV masks the reader may add), the metrics at the model's own
//     threshold on the float probabilities (as unet_core.metrics), and the two files of
//     `python -m unet_train predict` (<stem>_prob.png: round(p * 65535) in a 16-bit grey PNG;
//     <stem>_mask.png: 0/255, p >= threshold, 0 outside a FOV mask if one is given).
//
// The runtime (onnxruntime-web, served from the site) and the model are fetched when the
// reader first segments an image, never with the page.

import { ExplorerView, LEVELS } from "./mask_explorer.js";
import { decodePng, decodeTiff, encodePng, sniff } from "./image_codec.js";

//: The largest image the page segments: its buffers take about BYTES_PER_PIXEL bytes a pixel.
export const MAX_PIXELS = 4096 * 4096;
export const BYTES_PER_PIXEL = 48;
const STEPS = 100; // the explorer's slider: thresholds k / 100

// -- reading and preparing -------------------------------------------------------------------
/** A decoded image file: {width, height, channels, bits, data (H, W, C), format, pages}. */
export async function readImage(bytes, name = "the image") {
  const kind = sniff(bytes);
  if (kind === "png") return { ...(await decodePng(bytes)), format: "PNG" };
  if (kind === "tiff") return { ...(await decodeTiff(bytes)), format: "TIFF" };
  if (kind === null) {
    throw new Error(`${name} is not an image this page reads: PNG, TIFF, JPEG, GIF, WebP ` +
      "or BMP");
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes]),
      { premultiplyAlpha: "none", colorSpaceConversion: "none" });
  } catch {
    throw new Error(`${name}: this browser cannot decode it as ${kind.toUpperCase()} ` +
      "(a truncated or damaged file?)");
  }
  const { width, height } = bitmap;
  checkSize(width, height, name);
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const data = ctx.getImageData(0, 0, width, height, { colorSpace: "srgb" }).data;
  return { width, height, channels: 4, bits: 8, data: new Uint8Array(data.buffer),
    format: kind.toUpperCase(), pages: 1 };
}

export function checkSize(width, height, name = "the image") {
  if (width * height > MAX_PIXELS) {
    throw new Error(`${name} is ${width}x${height} px (${(width * height / 1e6).toFixed(2)} ` +
      `megapixels): this page segments images up to ${(MAX_PIXELS / 1e6).toFixed(2)} megapixels ` +
      `(4096x4096; about ${BYTES_PER_PIXEL} bytes of the tab's memory a pixel); use ` +
      "`python -m unet_train predict` for larger ones");
  }
}

/** Grey (one plane) or colour (three), as read_image returns them: alpha dropped; an
 * opaque-or-not image whose three channels are equal everywhere counts as grey. */
function planesOf(image) {
  const { width, height, channels, data } = image;
  const n = width * height;
  if (channels <= 2) {
    const grey = new Float64Array(n);
    for (let i = 0; i < n; i++) grey[i] = data[i * channels];
    return [grey];
  }
  const rgb = [new Float64Array(n), new Float64Array(n), new Float64Array(n)];
  let equal = true;
  for (let i = 0; i < n; i++) {
    const r = data[i * channels];
    const g = data[i * channels + 1];
    const b = data[i * channels + 2];
    rgb[0][i] = r;
    rgb[1][i] = g;
    rgb[2][i] = b;
    if (equal && (r !== g || g !== b)) equal = false;
  }
  return equal ? [rgb[0]] : rgb;
}

/** The network's input, float32 (C, H, W), as unet_train.predict.to_model_input. */
export function prepareInput(image, manifest) {
  if (manifest.channels === "green_clahe") {
    throw new Error("this model reads CLAHE-equalised green channels, which the page does " +
      "not compute: use `python -m unet_train predict`");
  }
  const n = image.width * image.height;
  // 8-bit: uint8 * float32(1 / 255) (prepare_image); 16-bit: float64 / 65535 -> float32
  const scale = image.bits === 8 ? (v) => Math.fround(v * Math.fround(1 / 255))
    : (v) => Math.fround(v / 65535);
  const planes = planesOf(image).map((plane) => Float32Array.from(plane, scale));
  const luminance = () => {
    const [r, g, b] = planes;
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      out[i] = Math.fround(Math.fround(Math.fround(r[i] * 0.299) +
        Math.fround(g[i] * 0.587)) + Math.fround(b[i] * 0.114));
    }
    return [out];
  };
  let chosen = planes;
  if (planes.length === 3 && manifest.channels === "green") chosen = [planes[1]];
  else if (planes.length === 3 && manifest.channels === "gray") chosen = luminance();
  if (chosen.length === 3 && manifest.in_channels === 1) chosen = luminance();
  if (chosen.length === 1 && manifest.in_channels === 3) chosen = [chosen[0], chosen[0], chosen[0]];
  if (chosen.length !== manifest.in_channels) {
    throw new Error(`cannot turn a ${chosen.length}-channel image into ` +
      `${manifest.in_channels} channels`);
  }
  const out = new Float32Array(manifest.in_channels * n);
  chosen.forEach((plane, c) => out.set(plane, c * n));
  return out;
}

/** A mask file's pixels as 0/1, by unet_core.data.imageio.binarize_mask's grey-level rule:
 * one level: non-zero; two: the higher; more: >= half the full scale (255 or 65535). */
export function binarize(image) {
  const { width, height, channels, data } = image;
  const n = width * height;
  const colour = Math.min(channels, 3) === 3 ? 3 : 1;
  const values = new Uint16Array(n);
  const seen = new Set();
  for (let i = 0; i < n; i++) {
    let v = data[i * channels];
    for (let c = 1; c < colour; c++) v = Math.max(v, data[i * channels + c]);
    values[i] = v;
    if (seen.size < 3) seen.add(v);
  }
  const levels = [...seen].sort((a, b) => a - b);
  let rule;
  if (levels.length === 1) rule = () => levels[0] !== 0;
  else if (levels.length === 2) rule = (v) => v === levels[1];
  else {
    let top = 0;
    for (let i = 0; i < n; i++) top = Math.max(top, values[i]);
    const full = top <= 255 ? 255 : 65535;
    rule = (v) => v >= full / 2;
  }
  return Uint8Array.from(values, (v) => (rule(v) ? 1 : 0));
}

function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** predict's <stem>_prob.png values: round(clip(p, 0, 1) * 65535) in float32, halves even. */
export function encodeProbability(prob) {
  return Uint16Array.from(prob, (p) => roundHalfEven(
    Math.fround(Math.min(Math.max(p, 0), 1) * LEVELS)));
}

/** The explorer's 16-bit levels (unet_book.explorer_widget.quantise): exact at k / 100. */
export function explorerLevels(prob, steps = STEPS) {
  const q = new Uint16Array(prob.length);
  for (let i = 0; i < prob.length; i++) {
    const p = prob[i];
    let level = roundHalfEven(Math.min(Math.max(p, 0), 1) * LEVELS);
    const k = Math.min(Math.max(roundHalfEven(p * steps), 1), steps - 1);
    const t = Math.fround(k / steps);
    const qt = Math.floor((2 * k * LEVELS + steps) / (2 * steps));
    level = p >= t ? Math.max(level, qt) : Math.min(level, qt - 1);
    q[i] = level;
  }
  return q;
}

/** Confusion counts and metrics at `threshold` on the float probabilities, inside `fov`
 * (0/1, or null for every pixel): unet_core.metrics.segmentation_metrics's numbers. */
export function metricsAt(prob, target, fov, threshold) {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let tn = 0;
  const t = Math.fround(threshold);
  for (let i = 0; i < prob.length; i++) {
    if (fov && !fov[i]) continue;
    const yes = prob[i] >= t;
    if (target[i]) yes ? tp++ : fn++;
    else yes ? fp++ : tn++;
  }
  const ratio = (a, b) => (b ? a / b : NaN);
  return { tp, fp, fn, tn, f1: ratio(2 * tp, 2 * tp + fp + fn),
    sensitivity: ratio(tp, tp + fn), specificity: ratio(tn, tn + fp),
    precision: ratio(tp, tp + fp) };
}

/** The image as the explorer shows it: an 8-bit PNG of the prepared input's first three
 * (or one) planes. */
async function displayImage(input, channels, width, height) {
  const n = width * height;
  const rgba = new Uint8Array(4 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      rgba[4 * i + c] = Math.round(255 * input[(channels === 3 ? c : 0) * n + i]);
    }
    rgba[4 * i + 3] = 255;
  }
  return encodePng(width, height, 4, 8, rgba);
}

// -- the page --------------------------------------------------------------------------------
const CSS = `
.unet-segment-root { border: 1px solid #ccd; border-radius: 6px; padding: 0.8em; margin: 1em 0; }
.unet-segment-root .us-controls { display: flex; flex-wrap: wrap; gap: 0.6em 1.2em;
  align-items: center; }
.unet-segment-root .us-drop { border: 2px dashed #99a; border-radius: 6px; padding: 0.8em;
  text-align: center; margin: 0.6em 0; }
.unet-segment-root .us-drop.us-over { background: #eef4ff; border-color: #0072b2; }
.unet-segment-root progress { width: 14em; }
.unet-segment-root .us-status[data-state="error"] { color: #b00020; }
.unet-segment-root .us-downloads a { margin-right: 1.2em; }
`;

function element(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function stemOf(name) {
  const base = name.replace(/^.*[\\/]/, "");
  const dot = base.lastIndexOf(".");
  return (dot > 0 ? base.slice(0, dot) : base).replace(/[^A-Za-z0-9._-]/g, "_") || "image";
}

export class SegmentPage {
  /** config: {models: [{label, manifestUrl, modelUrl, manifest?}], ortUrl, wasmBase,
   * workerUrl} (absolute URLs). */
  constructor(el, config) {
    this.config = config;
    this.worker = null;
    this.job = 0;
    this.result = null; // {name, width, height, prob, input, manifest, ms, threads, tiles}
    this.masks = { target: null, fov: null };
    this.reading = {}; // kind -> the promise of a mask being read
    this.urls = [];
    const id = `us${Math.random().toString(36).slice(2, 9)}`;
    this.model = element("select", { className: "us-model", id: `${id}-model` });
    for (const [i, m] of config.models.entries()) {
      this.model.append(element("option", { value: String(i), textContent: m.label }));
    }
    const fileInput = (cls, accept) => element("input", { type: "file", className: cls, accept });
    const images = "image/*,.tif,.tiff";
    this.file = fileInput("us-file", images);
    this.target = fileInput("us-target", images);
    this.fov = fileInput("us-fov", images);
    this.cancel = element("button", { type: "button", className: "us-cancel",
      textContent: "cancel", disabled: true });
    this.progress = element("progress", { className: "us-progress", max: 1, value: 0 });
    this.status = element("p", { className: "us-status",
      textContent: "Pick or drop an image: the model and the runtime load then." });
    this.status.setAttribute("aria-live", "polite");
    this.summary = element("p", { className: "us-summary" });
    this.downloads = element("p", { className: "us-downloads" });
    this.drop = element("div", { className: "us-drop" }, [
      "Drop an image here, or ", element("label", {}, ["pick one: ", this.file])]);
    this.explorerEl = element("div", { className: "us-explorer" });
    this.root = element("div", { className: "unet-segment-root" }, [
      element("style", { textContent: CSS }),
      element("div", { className: "us-controls" }, [
        element("label", {}, ["model ", this.model]),
        element("label", {}, ["ground truth (optional) ", this.target]),
        element("label", {}, ["field of view mask (optional) ", this.fov]),
      ]),
      this.drop,
      element("div", { className: "us-controls" }, [this.progress, this.cancel]),
      this.status, this.summary, this.downloads, this.explorerEl,
    ]);
    this.root.dataset.state = "idle";
    el.replaceChildren(this.root);
    this.view = null;
    this.listen();
  }

  listen() {
    this.file.addEventListener("change", () => this.file.files[0] && this.segment(this.file.files[0]));
    for (const [kind, input] of [["target", this.target], ["fov", this.fov]]) {
      input.addEventListener("change", () => {
        const read = this.readMask(kind, input.files[0]);
        this.reading[kind] = read;
        read.then(() => this.result && this.reading[kind] === read && this.show());
      });
    }
    this.cancel.addEventListener("click", () => this.stop("cancelled"));
    this.model.addEventListener("change", () => this.lastFile && this.segment(this.lastFile));
    for (const type of ["dragenter", "dragover"]) {
      this.drop.addEventListener(type, (e) => {
        e.preventDefault();
        this.drop.classList.add("us-over");
      });
    }
    this.drop.addEventListener("dragleave", () => this.drop.classList.remove("us-over"));
    this.drop.addEventListener("drop", (e) => {
      e.preventDefault();
      this.drop.classList.remove("us-over");
      const file = e.dataTransfer?.files?.[0];
      if (file) this.segment(file);
    });
  }

  say(text, state) {
    this.status.textContent = text;
    this.status.dataset.state = state;
    this.root.dataset.state = state;
  }

  stop(why) {
    if (this.worker && this.running) {
      this.worker.terminate(); // a tile in flight cannot be stopped otherwise
      this.worker = null;
      this.running = false;
      this.job++;
      this.cancel.disabled = true;
      this.progress.value = 0;
      this.say(`Stopped (${why}).`, "cancelled");
    }
  }

  async readMask(kind, file) {
    if (!file) return;
    try {
      const image = await readImage(new Uint8Array(await file.arrayBuffer()), file.name);
      this.masks[kind] = { name: file.name, width: image.width, height: image.height,
        bits: binarize(image) };
    } catch (err) {
      this.masks[kind] = null;
      this.say(`${file.name}: ${err.message}`, "error");
    }
  }

  async segment(file) {
    this.stop("another image");
    this.lastFile = file;
    const job = ++this.job;
    this.clear();
    const model = this.config.models[Number(this.model.value)];
    this.say(`reading ${file.name} ...`, "reading");
    let input;
    let image;
    let manifest;
    try {
      const bytes = new Uint8Array(await file.arrayBuffer());
      if (bytes.length === 0) throw new Error(`${file.name} is empty`);
      image = await readImage(bytes, file.name);
      checkSize(image.width, image.height, file.name);
      manifest = model.manifest ?? (model.manifest = await (await fetch(model.manifestUrl)).json());
      input = prepareInput(image, manifest);
    } catch (err) {
      if (job === this.job) this.say(err.message.startsWith(file.name) ? err.message
        : `${file.name}: ${err.message}`, "error");
      return;
    }
    if (job !== this.job) return;
    const { width, height } = image;
    const pages = image.pages > 1 ? ` (the first of its ${image.pages} pages)` : "";
    this.say(`${file.name}${pages}: ${width}x${height} px ${image.format}, ` +
      `${image.bits}-bit; segmenting ...`, "running");
    if (!this.worker) {
      this.worker = new Worker(this.config.workerUrl, { type: "module" });
    }
    this.running = true;
    this.cancel.disabled = false;
    this.progress.value = 0;
    const done = new Promise((resolve, reject) => {
      this.worker.onmessage = ({ data }) => {
        if (data.id !== job) return;
        if (data.type === "status") this.say(data.text, "running");
        else if (data.type === "progress") {
          this.progress.max = data.total;
          this.progress.value = data.done;
          this.say(`${file.name}: tile ${data.done} of ${data.total}`, "running");
        } else if (data.type === "done") resolve(data);
        else if (data.type === "error") reject(new Error(data.message));
      };
      this.worker.onerror = (e) => reject(new Error(e.message || "the worker failed to start"));
    });
    this.worker.postMessage({ type: "run", id: job, ortUrl: this.config.ortUrl,
      wasmBase: this.config.wasmBase, modelUrl: model.modelUrl, manifest,
      image: input, height, width });
    try {
      const out = await done;
      if (job !== this.job) return;
      this.running = false;
      this.cancel.disabled = true;
      this.result = { name: file.name, stem: stemOf(file.name), width, height, prob: out.prob,
        input, manifest, ms: out.ms, threads: out.threads, tiles: out.tiles };
      await this.show();
    } catch (err) {
      if (job !== this.job) return;
      this.running = false;
      this.cancel.disabled = true;
      this.say(`${file.name}: ${err.message}`, "error");
    }
  }

  /** Forget the last result: its summary, downloads and explorer. */
  clear() {
    this.result = null;
    this.metrics = null;
    this.summary.textContent = "";
    this.summary.dataset.f1 = "";
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
    this.downloads.replaceChildren();
    this.explorerEl.hidden = true;
  }

  /** A mask's 0/1 pixels if it fits the image; else null and a note. */
  maskFor(kind, notes) {
    const mask = this.masks[kind];
    const r = this.result;
    if (!mask) return null;
    if (mask.width !== r.width || mask.height !== r.height) {
      notes.push(`The ${kind === "fov" ? "field-of-view" : "ground-truth"} mask ${mask.name} ` +
        `is ${mask.width}x${mask.height} px, the image ${r.width}x${r.height}: not used.`);
      return null;
    }
    return mask.bits;
  }

  async show() {
    await Promise.all(Object.values(this.reading));
    const r = this.result;
    const notes = [];
    const target = this.maskFor("target", notes);
    const fov = this.maskFor("fov", notes);
    const n = r.width * r.height;
    const labels = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      labels[i] = (target ? target[i] : 0) | ((fov ? fov[i] : 1) << 1);
    }
    const threshold = r.manifest.threshold;
    const above = fov ? metricsAt(r.prob, new Uint8Array(n).fill(1),
      Uint8Array.from(fov, (v) => 1 - v), threshold) : null;
    const data = { format: 1, name: r.name, width: r.width, height: r.height, levels: LEVELS,
      steps: STEPS, has_target: Boolean(target), has_fov: Boolean(fov),
      has_second_observer: false, prob: explorerLevels(r.prob), labels,
      image: { encoding: "image/png", bytes: await displayImage(r.input,
        r.manifest.in_channels, r.width, r.height) } };
    this.metrics = target ? metricsAt(r.prob, target, fov, threshold) : null;
    this.outside = above ? { above: above.tp, pixels: above.tp + above.fn } : null;
    const parts = [`${r.name}: ${r.tiles} tiles in ${(r.ms / 1000).toFixed(2)} s ` +
      `(${r.threads} thread${r.threads > 1 ? "s" : ""}, WebAssembly).`];
    if (this.metrics) {
      const m = this.metrics;
      parts.push(`At the model's threshold ${threshold.toFixed(4)}${fov ? ", inside the FOV" : ""}: ` +
        `F1 ${m.f1.toFixed(4)} Se ${m.sensitivity.toFixed(4)} Sp ${m.specificity.toFixed(4)} ` +
        `precision ${m.precision.toFixed(4)}.`);
    } else {
      parts.push("Add a ground-truth mask for the metrics.");
    }
    if (above) {
      parts.push(`Outside the FOV, ${(100 * above.tp / (above.tp + above.fn)).toFixed(2)} % ` +
        "of the pixels are above the threshold.");
    }
    parts.push(...notes);
    this.summary.textContent = parts.join(" ");
    this.summary.dataset.f1 = this.metrics ? String(this.metrics.f1) : "";
    await this.offerDownloads(r, fov);
    this.explorerEl.hidden = false;
    if (!this.view) this.view = new ExplorerView(this.explorerEl, {}, "static");
    this.view.setImages([r.name], r.name);
    // without a ground truth the errors overlay is empty: show the probabilities instead
    this.view.set({ k: Math.min(Math.max(Math.round(threshold * STEPS), 1), STEPS - 1),
      right: target ? "errors" : "probability" });
    await this.view.setData(data);
    this.say(`${r.name}: done.`, "done");
  }

  async offerDownloads(r, fov) {
    for (const url of this.urls) URL.revokeObjectURL(url);
    const threshold = Math.fround(r.manifest.threshold);
    const mask = Uint8Array.from(r.prob, (p, i) => (p >= threshold && (!fov || fov[i]) ? 255 : 0));
    const files = [
      [`${r.stem}_prob.png`, await encodePng(r.width, r.height, 1, 16, encodeProbability(r.prob)),
        "probability (16-bit PNG, value / 65535)"],
      [`${r.stem}_mask.png`, await encodePng(r.width, r.height, 1, 8, mask),
        `mask (0/255, p >= ${r.manifest.threshold.toFixed(4)}${fov ? ", 0 outside the FOV" : ""})`],
    ];
    this.urls = files.map(([, bytes]) => URL.createObjectURL(new Blob([bytes],
      { type: "image/png" })));
    this.downloads.replaceChildren(...files.map(([name, , text], i) => element("a", {
      href: this.urls[i], download: name, textContent: `${name}: ${text}` })));
  }
}

/** The page's widget: `config` as SegmentPage's, with manifest URLs made absolute. */
export function mount(el, config) {
  const page = new SegmentPage(el, config);
  el.unetSegment = page;
  return page;
}
