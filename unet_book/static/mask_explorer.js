// The mask explorer in the browser (chapter 8 of the book).
//
// One ES module, two hosts:
//   * `export default { render }`: the anywidget of unet_book.explorer_widget (JupyterLab,
//     Notebook). Python sends one image's data file (trait `payload`) and the list of images;
//     everything else happens here.
//   * `mount(el, indexUrl)`: the static book. `index.json` lists a run's test images; the data
//     file of an image is fetched when it is chosen.
//
// A data file ("UNETEXP1") holds the probability map at 16 bits, the labels (ground truth,
// field of view, second observer: one byte of bits per pixel) and the image (JPEG); see
// unet_book.explorer_widget.encode_case. Once per image this module builds four histograms of
// the 65536 probability levels (vessel / background, inside / outside the FOV) and their
// cumulative sums, so that the confusion counts at any threshold are two array reads, and the
// AUC-ROC (a trapezoid over the levels). A threshold move then costs the metrics line (O(1))
// and one pass over the pixels shown in each panel.
//
// The 16-bit levels are exact at the slider's thresholds k / steps (k = 1 ... steps - 1): a
// pixel is predicted positive, `prob >= k / steps` in Python, exactly when its level is
// >= thresholdBin(k, steps), so the counts equal unet_core.metrics on the float
// probabilities (the Python side quantises so; a test checks it).
//
// No network: no import, no CDN; the CSS is in this file.

export const LEVELS = 65535;
export const OVERLAYS = ["image", "probability", "errors", "ground truth", "second observer",
  "prediction"];
export const ZOOMS = { "whole image": null, "256 px": 256, "128 px": 128, "64 px": 64 };
// Okabe & Ito's colour-blind-safe orange and sky blue for the two errors (unet_book.explorer.PALETTE)
export const PALETTE = {
  tp: [255, 255, 255], fp: [230, 159, 0], fn: [86, 180, 233], tn: [0, 0, 0],
  outside: [60, 60, 60],
};
export const LEGEND = {
  tp: "vessel found (TP)", fp: "false alarm (FP)", fn: "missed (FN)", tn: "background (TN)",
  outside: "outside the field of view",
};
const NO_LABELS = 90; // grey of a panel whose labels are unknown
const DIM = 0.35; // brightness outside the FOV
// matplotlib's magma, 256 RGB entries (the probability overlay; a test compares it)
export const MAGMA_HEX =
  "00000300000400000601000701010901010b02020d02020f03031104031304041505041706051907051b08061d09071f" +
  "0a07220b08240c09260d0a280e0a2a0f0b2c100c2f110c31120d33140d35150e38160e3a170f3c180f3f1a10411b1044" +
  "1c10461e10491f114b20114d2211502311522511552611572811592a115c2b115e2d10602f1062301065321067341068" +
  "350f6a370f6c390f6e3b0f6f3c0f713e0f72400f73420f74430f75450f76470f774810784a10794b10794d117a4f117b" +
  "50127b52127c53137c55137d57147d58157e5a157e5b167e5d177e5e177f60187f61187f63197f651a80661a80681b80" +
  "691c806b1c806c1d806e1e816f1e81711f81731f817420817621817721817922817a22817c23817e24817f2481812581" +
  "8225818426818526818727818928818a28818c29808d29808f2a80912a80922b80942b80952c80972c7f992d7f9a2d7f" +
  "9c2e7f9e2e7e9f2f7ea12f7ea3307ea4307da6317da7317da9327cab337cac337bae347bb0347bb1357ab3357ab53679" +
  "b63679b83778b93778bb3877bd3977be3976c03a75c23a75c33b74c53c74c63c73c83d72ca3e72cb3e71cd3f70ce4070" +
  "d0416fd1426ed3426dd4436dd6446cd7456bd9466ada4769dc4869dd4968de4a67e04b66e14c66e24d65e44e64e55063" +
  "e65162e75262e85461ea5560eb5660ec585fed595fee5b5eee5d5def5e5df0605df1615cf2635cf3655cf3675bf4685b" +
  "f56a5bf56c5bf66e5bf6705bf7715bf7735cf8755cf8775cf9795cf97b5df97d5dfa7f5efa805efa825ffb8460fb8660" +
  "fb8861fb8a62fc8c63fc8e63fc9064fc9265fc9366fd9567fd9768fd9969fd9b6afd9d6bfd9f6cfda16efda26ffda470" +
  "fea671fea873feaa74feac75feae76feaf78feb179feb37bfeb57cfeb77dfeb97ffebb80febc82febe83fec085fec286" +
  "fec488fec689fec78bfec98dfecb8efdcd90fdcf92fdd193fdd295fdd497fdd698fdd89afdda9cfddc9dfddd9ffddfa1" +
  "fde1a3fce3a5fce5a6fce6a8fce8aafceaacfcecaefceeb0fcf0b1fcf1b3fcf3b5fcf5b7fbf7b9fbf9bbfbfabdfbfcbf";
const MAGMA = Uint8Array.from(MAGMA_HEX.match(/../g), (h) => parseInt(h, 16));
const MAGIC = "UNETEXP1";
const BINS = LEVELS + 1;

const CSS = `
.unet-explorer-root { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: inherit; max-width: 100%; }
.unet-explorer-root .ux-controls { display: flex; flex-wrap: wrap; gap: 6px 14px;
  align-items: center; margin: 4px 0 6px; }
.unet-explorer-root .ux-controls label { display: inline-flex; align-items: center; gap: 4px;
  white-space: nowrap; }
.unet-explorer-root select, .unet-explorer-root input { font: inherit; }
.unet-explorer-root .ux-threshold input { width: min(240px, 60vw); }
.unet-explorer-root .ux-threshold output { font-variant-numeric: tabular-nums;
  min-width: 2.6em; }
.unet-explorer-root .ux-metrics { font-variant-numeric: tabular-nums; margin: 4px 0;
  overflow-wrap: anywhere; }
.unet-explorer-root .ux-panels { display: flex; flex-wrap: wrap; gap: 8px; }
.unet-explorer-root figure { flex: 1 1 260px; min-width: 0; max-width: 600px; margin: 0; }
.unet-explorer-root canvas { display: block; width: 100%; height: auto; background: #000;
  image-rendering: pixelated; image-rendering: crisp-edges; }
.unet-explorer-root canvas.ux-zoomed { cursor: grab; touch-action: none; }
.unet-explorer-root canvas:focus-visible { outline: 3px solid #0072b2; outline-offset: 2px; }
.unet-explorer-root figcaption { font-size: 12px; opacity: 0.8; }
.unet-explorer-root .ux-legend { display: flex; flex-wrap: wrap; gap: 4px 14px; padding: 0;
  margin: 6px 0; list-style: none; font-size: 13px; }
.unet-explorer-root .ux-legend li { display: inline-flex; align-items: center; gap: 5px; }
.unet-explorer-root .ux-swatch { width: 14px; height: 14px; border: 1px solid #888;
  display: inline-block; }
.unet-explorer-root .ux-status { font-size: 12px; opacity: 0.8; margin: 2px 0; }
`;

// -- data ------------------------------------------------------------------------------------
function bytesOf(buffer) {
  if (buffer instanceof Uint8Array) return buffer;
  if (ArrayBuffer.isView(buffer)) {
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }
  return new Uint8Array(buffer);
}

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A data file (ArrayBuffer, DataView or Uint8Array) as {header fields, prob, labels, image}. */
export async function decode(buffer) {
  const bytes = bytesOf(buffer);
  const text = new TextDecoder();
  if (bytes.length < 12 || text.decode(bytes.subarray(0, 8)) !== MAGIC) {
    throw new Error("not a mask explorer data file");
  }
  const size = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, true);
  const header = JSON.parse(text.decode(bytes.subarray(12, 12 + size)));
  const sections = {};
  let at = 12 + size;
  for (const [name, encoding, length] of header.sections) {
    sections[name] = { encoding, bytes: bytes.subarray(at, at + length) };
    at += length;
  }
  const count = header.width * header.height;
  const planes = await inflate(sections.prob.bytes); // high bytes, then low bytes
  const labels = await inflate(sections.labels.bytes);
  if (planes.length !== 2 * count || labels.length !== count) {
    throw new Error(`${header.name}: the data file does not hold ${header.width}x${header.height}`);
  }
  const prob = new Uint16Array(count);
  for (let i = 0; i < count; i++) prob[i] = (planes[i] << 8) | planes[count + i];
  return { ...header, prob, labels, image: sections.image };
}

/** The image's RGBA pixels (browser only: createImageBitmap). */
async function imagePixels(data) {
  const { width, height } = data;
  const bitmap = await createImageBitmap(new Blob([data.image.bytes],
    { type: data.image.encoding }));
  const canvas = typeof OffscreenCanvas !== "undefined" ? new OffscreenCanvas(width, height)
    : Object.assign(document.createElement("canvas"), { width, height });
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close?.();
  return ctx.getImageData(0, 0, width, height).data;
}

/** The first level counted positive at threshold k / steps: round(k / steps * 65535), halves
 * up, in integers (unet_book.explorer_widget.threshold_bin computes the same). */
export function thresholdBin(k, steps) {
  return Math.floor((2 * k * LEVELS + steps) / (2 * steps));
}

function cumulate(hist, fovOnly) {
  // counts of pixels with level >= b, for b = 65535 ... 0; AUC by the trapezoid over levels
  const tpAt = new Float64Array(BINS + 1);
  const fpAt = new Float64Array(BINS + 1);
  let tp = 0;
  let fp = 0;
  let twiceArea = 0;
  for (let b = BINS - 1; b >= 0; b--) {
    const pos = hist[3 * BINS + b] + (fovOnly ? 0 : hist[BINS + b]);
    const neg = hist[2 * BINS + b] + (fovOnly ? 0 : hist[b]);
    twiceArea += neg * (2 * tp + pos);
    tp += pos;
    fp += neg;
    tpAt[b] = tp;
    fpAt[b] = fp;
  }
  return { tpAt, fpAt, positives: tp, negatives: fp,
    auc: tp && fp ? twiceArea / (2 * tp * fp) : NaN };
}

/** Once per image: the histograms (index: vessel + 2 * inside the FOV) and cumulative sums. */
export function prepare(data) {
  const { prob, labels } = data;
  const hist = new Uint32Array(4 * BINS);
  const fov = data.has_fov;
  for (let i = 0; i < prob.length; i++) {
    const lab = labels[i];
    const inside = fov ? (lab >> 1) & 1 : 1;
    hist[((lab & 1) + 2 * inside) * BINS + prob[i]]++;
  }
  return { hist, fov: cumulate(hist, true), all: cumulate(hist, false) };
}

function ratio(a, b) { return b ? a / b : NaN; }

/** The metrics at threshold k / steps, inside the FOV (fovOnly) or over the whole image. */
export function metricsAt(stats, k, steps, fovOnly = true) {
  const c = fovOnly ? stats.fov : stats.all;
  const b = thresholdBin(k, steps);
  const tp = c.tpAt[b];
  const fp = c.fpAt[b];
  const fn = c.positives - tp;
  const tn = c.negatives - fp;
  return {
    f1: ratio(2 * tp, 2 * tp + fp + fn), sensitivity: ratio(tp, tp + fn),
    specificity: ratio(tn, tn + fp), precision: ratio(tp, tp + fp),
    accuracy: ratio(tp + tn, tp + tn + fp + fn), auc_roc: c.auc, tp, fp, fn, tn,
  };
}

function fixed(v, digits) { return Number.isNaN(v) ? "nan" : v.toFixed(digits); }

/** The metrics line, as unet_book.explorer.metrics_text writes it. */
export function metricsText(values, threshold) {
  const t = `threshold ${threshold.toFixed(2)}`;
  if (!values) return `${t}: no ground truth for this image, no metrics`;
  return `${t}: F1 ${fixed(values.f1, 4)}, Se ${fixed(values.sensitivity, 4)}, ` +
    `Sp ${fixed(values.specificity, 4)}, precision ${fixed(values.precision, 4)}, ` +
    `AUC ${fixed(values.auc_roc, 4)}`;
}

function roundHalfEven(x) { // Python's round(), so that windowOf equals explorer.window
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The size x size region around the centre (fractions), clipped: unet_book.explorer.window. */
export function windowOf(height, width, size, cy, cx) {
  if (!size) return { y0: 0, x0: 0, h: height, w: width };
  const h = Math.min(size, height);
  const w = Math.min(size, width);
  const y0 = Math.min(Math.max(roundHalfEven(cy * height - h / 2), 0), height - h);
  const x0 = Math.min(Math.max(roundHalfEven(cx * width - w / 2), 0), width - w);
  return { y0, x0, h, w };
}

/** Paint one panel's overlay of the region into out (RGBA, region.w * region.h * 4). */
export function paint(out, data, pixels, overlay, bin, showFov, region) {
  const { prob, labels, width } = data;
  const fov = showFov && data.has_fov;
  const target = data.has_target;
  const second = data.has_second_observer;
  const { tp, fp, fn, tn, outside } = PALETTE;
  const errors = overlay === "errors" && target;
  let o = 0;
  for (let y = region.y0; y < region.y0 + region.h; y++) {
    let i = y * width + region.x0;
    for (let x = 0; x < region.w; x++, i++, o += 4) {
      const lab = labels[i];
      const out3 = fov && !(lab & 2);
      let r;
      let g;
      let b;
      if (errors) { // not dimmed: outside the FOV is grey
        let c;
        if (out3) c = outside;
        else if (prob[i] >= bin) c = lab & 1 ? tp : fp;
        else c = lab & 1 ? fn : tn;
        out[o] = c[0]; out[o + 1] = c[1]; out[o + 2] = c[2]; out[o + 3] = 255;
        continue;
      }
      if (overlay === "image") {
        if (pixels) {
          r = pixels[4 * i]; g = pixels[4 * i + 1]; b = pixels[4 * i + 2];
        } else {
          r = g = b = NO_LABELS;
        }
      } else if (overlay === "probability") {
        const m = 3 * ((prob[i] / 257) | 0); // 65535 = 255 * 257: floor(p * 255)
        r = MAGMA[m]; g = MAGMA[m + 1]; b = MAGMA[m + 2];
      } else if (overlay === "prediction") {
        r = g = b = prob[i] >= bin ? 255 : 0;
      } else if (overlay === "ground truth") {
        r = g = b = target ? (lab & 1 ? 255 : 0) : NO_LABELS;
      } else if (overlay === "second observer") {
        r = g = b = second ? (lab & 4 ? 255 : 0) : NO_LABELS;
      } else { // errors without ground truth
        r = g = b = NO_LABELS;
      }
      if (out3) {
        r = (r * DIM) | 0; g = (g * DIM) | 0; b = (b * DIM) | 0;
      }
      out[o] = r; out[o + 1] = g; out[o + 2] = b; out[o + 3] = 255;
    }
  }
}

// -- the view --------------------------------------------------------------------------------
function element(tag, props = {}, children = []) {
  const el = Object.assign(document.createElement(tag), props);
  for (const child of children) el.append(child);
  return el;
}

function options(select, values, current) {
  select.replaceChildren(...values.map((v) => element("option", { value: v, textContent: v })));
  if (values.includes(current)) select.value = current;
}

/** The explorer's controls, panels and metrics over one image's data at a time. */
export class ExplorerView {
  /** hooks: onImage(name) when the reader picks an image, onState(state) after a control
   * moved, onUpdate(text, ms) after each redraw. */
  constructor(el, hooks = {}, mode = "static") {
    this.hooks = hooks;
    this.state = { k: 50, showFov: true, left: "image", right: "errors", zoom: "whole image",
      cy: 0.5, cx: 0.5 };
    this.steps = 100;
    this.data = null;
    this.lastUpdateMs = NaN;
    this.updates = 0;
    const id = `ux${Math.random().toString(36).slice(2, 9)}`;
    const label = (text, control, cls = "") => element("label", { className: cls },
      [text, control]);
    this.image = element("select", { className: "ux-image", id: `${id}-image` });
    this.slider = element("input", { type: "range", min: "1", max: "99", step: "1",
      value: "50", className: "ux-slider" });
    this.slider.setAttribute("aria-label", "threshold");
    this.readout = element("output", { className: "ux-readout", textContent: "0.50" });
    this.fov = element("input", { type: "checkbox", checked: true, className: "ux-fov" });
    this.left = element("select", { className: "ux-left" });
    this.right = element("select", { className: "ux-right" });
    this.zoom = element("select", { className: "ux-zoom" });
    options(this.left, OVERLAYS, "image");
    options(this.right, OVERLAYS, "errors");
    options(this.zoom, Object.keys(ZOOMS), "whole image");
    this.metrics = element("p", { className: "ux-metrics" });
    this.metrics.setAttribute("aria-live", "polite");
    this.canvases = [0, 1].map((side) => {
      const canvas = element("canvas", { className: `ux-canvas ux-panel-${side ? "right" : "left"}`,
        tabIndex: 0, width: 1, height: 1 });
      canvas.setAttribute("role", "img");
      return canvas;
    });
    this.captions = [0, 1].map(() => element("figcaption"));
    const legend = element("ul", { className: "ux-legend" }, Object.entries(LEGEND).map(
      ([key, text]) => element("li", {}, [element("span", { className: "ux-swatch",
        style: `background: rgb(${PALETTE[key].join(",")})` }), text])));
    legend.setAttribute("aria-label", "colours of the errors overlay");
    this.status = element("p", { className: "ux-status", textContent: "loading ..." });
    this.root = element("div", { className: "unet-explorer-root" }, [
      element("style", { textContent: CSS }),
      element("div", { className: "ux-controls" }, [
        label("image ", this.image),
        label("threshold ", this.slider, "ux-threshold"),
        this.readout,
        label(this.fov, " field of view"),
        label("left ", this.left), label("right ", this.right), label("zoom ", this.zoom),
      ]),
      this.metrics,
      element("div", { className: "ux-panels" }, [0, 1].map((side) => element("figure", {},
        [this.canvases[side], this.captions[side]]))),
      legend,
      this.status,
    ]);
    this.root.dataset.mode = mode;
    // JupyterLab: keys and clicks in the explorer (arrows on the slider or a panel, + and -,
    // dragging the slider) are the explorer's, not the notebook's (its command-mode shortcuts,
    // and its handlers that move the focus to the cell and cancel the slider's own action)
    this.root.setAttribute("data-lm-suppress-shortcuts", "true");
    if (mode === "widget") {
      for (const type of ["keydown", "keyup", "keypress", "mousedown", "pointerdown"]) {
        this.root.addEventListener(type, (e) => e.stopPropagation());
      }
    }
    this.root.dataset.state = "loading";
    el.replaceChildren(this.root);
    this.listen();
  }

  listen() {
    this.image.addEventListener("change", () => this.hooks.onImage?.(this.image.value));
    this.slider.addEventListener("input", () => this.set({ k: Number(this.slider.value) }, true));
    this.fov.addEventListener("change", () => this.set({ showFov: this.fov.checked }, true));
    this.left.addEventListener("change", () => this.set({ left: this.left.value }, true));
    this.right.addEventListener("change", () => this.set({ right: this.right.value }, true));
    this.zoom.addEventListener("change", () => this.set({ zoom: this.zoom.value }, true));
    for (const canvas of this.canvases) {
      canvas.addEventListener("pointerdown", (e) => this.dragStart(e, canvas));
      canvas.addEventListener("pointermove", (e) => this.dragMove(e, canvas));
      canvas.addEventListener("pointerup", () => { this.drag = null; });
      canvas.addEventListener("pointercancel", () => { this.drag = null; });
      canvas.addEventListener("keydown", (e) => this.key(e));
    }
  }

  region() {
    const d = this.data;
    return windowOf(d.height, d.width, ZOOMS[this.state.zoom], this.state.cy, this.state.cx);
  }

  dragStart(e, canvas) {
    if (!this.data || !ZOOMS[this.state.zoom]) return;
    this.drag = { x: e.clientX, y: e.clientY, cx: this.state.cx, cy: this.state.cy };
    canvas.setPointerCapture?.(e.pointerId);
  }

  dragMove(e, canvas) {
    if (!this.drag) return;
    const r = this.region();
    const scale = r.w / Math.max(1, canvas.clientWidth); // image pixels per screen pixel
    this.pan(this.drag.cy - ((e.clientY - this.drag.y) * scale) / this.data.height,
      this.drag.cx - ((e.clientX - this.drag.x) * scale) / this.data.width);
  }

  key(e) {
    const zooms = Object.keys(ZOOMS);
    const at = zooms.indexOf(this.state.zoom);
    if (e.key === "+" || e.key === "=") {
      this.set({ zoom: zooms[Math.min(at + 1, zooms.length - 1)] }, true);
    } else if (e.key === "-") {
      this.set({ zoom: zooms[Math.max(at - 1, 0)] }, true);
    } else if (e.key.startsWith("Arrow") && this.data && ZOOMS[this.state.zoom]) {
      const r = this.region();
      const dy = { ArrowUp: -1, ArrowDown: 1 }[e.key] ?? 0;
      const dx = { ArrowLeft: -1, ArrowRight: 1 }[e.key] ?? 0;
      this.pan(this.state.cy + (dy * r.h) / 8 / this.data.height,
        this.state.cx + (dx * r.w) / 8 / this.data.width);
    } else {
      return;
    }
    e.preventDefault();
  }

  pan(cy, cx) {
    const size = ZOOMS[this.state.zoom];
    const { height, width } = this.data;
    const hy = Math.min(size, height) / 2 / height;
    const hx = Math.min(size, width) / 2 / width;
    this.set({ cy: Math.min(Math.max(cy, hy), 1 - hy), cx: Math.min(Math.max(cx, hx), 1 - hx) },
      true);
  }

  /** Change the state (from a control when byUser, else from the host) and redraw. */
  set(changes, byUser = false) {
    const before = JSON.stringify(this.state);
    Object.assign(this.state, changes);
    this.state.k = Math.min(Math.max(Math.round(this.state.k), 1), this.steps - 1);
    if (!OVERLAYS.includes(this.state.left)) this.state.left = "image";
    if (!OVERLAYS.includes(this.state.right)) this.state.right = "errors";
    if (!(this.state.zoom in ZOOMS)) this.state.zoom = "whole image";
    if (JSON.stringify(this.state) === before) return;
    this.update();
    if (byUser) this.hooks.onState?.({ ...this.state, threshold: this.state.k / this.steps });
  }

  setImages(names, current) {
    options(this.image, names, current);
    this.image.disabled = names.length < 2;
  }

  /** Show a decoded data file (decode()); its histograms are built here, once. */
  async setData(data) {
    const pixels = data.image ? await imagePixels(data) : null;
    const t0 = performance.now();
    const stats = data.has_target ? prepare(data) : null;
    this.prepareMs = performance.now() - t0;
    this.data = data;
    this.pixels = pixels;
    this.stats = stats;
    this.steps = data.steps;
    this.slider.max = String(this.steps - 1);
    if (this.image.value !== data.name && [...this.image.options].some(
      (o) => o.value === data.name)) this.image.value = data.name;
    this.update();
    this.root.dataset.state = "ready";
    this.root.dataset.image = data.name;
  }

  showMessage(text, state = "empty") {
    this.status.textContent = text;
    this.root.dataset.state = state;
  }

  /** Redraw both panels and the metrics line; the time it took is kept in lastUpdateMs. */
  update() {
    const s = this.state;
    this.slider.value = String(s.k);
    const threshold = s.k / this.steps;
    this.readout.textContent = threshold.toFixed(2);
    this.slider.setAttribute("aria-valuetext", `threshold ${threshold.toFixed(2)}`);
    this.fov.checked = s.showFov;
    this.left.value = s.left;
    this.right.value = s.right;
    this.zoom.value = s.zoom;
    if (!this.data) return;
    const t0 = performance.now();
    const d = this.data;
    const values = this.stats ? metricsAt(this.stats, s.k, this.steps, s.showFov) : null;
    const text = metricsText(values, threshold) +
      (values ? (s.showFov && d.has_fov ? " (inside the FOV)" : " (whole image)") : "");
    this.metrics.textContent = text;
    const r = this.region();
    const bin = thresholdBin(s.k, this.steps);
    [s.left, s.right].forEach((overlay, side) => {
      const canvas = this.canvases[side];
      if (canvas.width !== r.w || canvas.height !== r.h) {
        canvas.width = r.w;
        canvas.height = r.h;
      }
      const ctx = canvas.getContext("2d");
      const picture = ctx.createImageData(r.w, r.h);
      paint(picture.data, d, this.pixels, overlay, bin, s.showFov, r);
      ctx.putImageData(picture, 0, 0);
      const where = ZOOMS[s.zoom] ? `, ${r.w}x${r.h} px at (${r.x0}, ${r.y0})` : "";
      canvas.classList.toggle("ux-zoomed", Boolean(ZOOMS[s.zoom]));
      canvas.setAttribute("aria-label", `${side ? "right" : "left"} panel: ${overlay} of ` +
        `${d.name} at threshold ${threshold.toFixed(2)}${where}` +
        (ZOOMS[s.zoom] ? "; arrow keys pan, + and - zoom" : "; + zooms"));
      this.captions[side].textContent = `${overlay}${where}`;
    });
    this.lastUpdateMs = performance.now() - t0;
    this.updates += 1;
    this.root.dataset.updateMs = this.lastUpdateMs.toFixed(2);
    this.status.textContent = `${d.name}: ${d.width}x${d.height} px; last update ` +
      `${this.lastUpdateMs.toFixed(1)} ms (metrics and both panels, in this browser)`;
    this.hooks.onUpdate?.(text, this.lastUpdateMs);
  }
}

// -- the static book -------------------------------------------------------------------------
/** The explorer over a run exported by unet_book.explorer_widget.export_static. */
export async function mount(el, indexUrl) {
  const base = new URL(indexUrl, document.baseURI);
  const response = await fetch(base);
  if (!response.ok) throw new Error(`${base}: HTTP ${response.status}`);
  const index = await response.json();
  const entries = new Map(index.images.map((entry) => [entry.name, entry]));
  const cache = new Map();
  let wanted = null;
  const view = new ExplorerView(el, {
    onImage: (name) => show(name),
  }, "static");
  async function show(name) {
    wanted = name;
    const entry = entries.get(name);
    view.showMessage(`loading ${name} (${Math.round(entry.bytes / 1024)} kB) ...`, "loading");
    try {
      if (!cache.has(name)) {
        cache.set(name, fetch(new URL(entry.file, base)).then((r) => {
          if (!r.ok) throw new Error(`${entry.file}: HTTP ${r.status}`);
          return r.arrayBuffer();
        }).then(decode));
      }
      const data = await cache.get(name);
      if (wanted === name) await view.setData(data);
    } catch (err) {
      cache.delete(name);
      view.showMessage(`cannot load ${name}: ${err.message}`, "error");
    }
  }
  view.set({ k: Math.round(index.threshold * index.steps) });
  view.setImages([...entries.keys()], index.images[0].name);
  el.unetExplorer = view;
  await show(index.images[0].name);
  return view;
}

// -- the anywidget (JupyterLab, Notebook) ----------------------------------------------------
function render({ model, el }) {
  const push = (values) => {
    model.set(values);
    model.save_changes();
  };
  const view = new ExplorerView(el, {
    onImage: (name) => push({ image: name }),
    onState: (s) => push({ threshold: s.threshold, show_fov: s.showFov, left: s.left,
      right: s.right, zoom: s.zoom }),
    onUpdate: (text, ms) => push({ metrics_text: text, last_update_ms: ms }),
  }, "widget");
  el.unetExplorer = view;
  const fromModel = () => view.set({ k: model.get("threshold") * view.steps,
    showFov: model.get("show_fov"), left: model.get("left"), right: model.get("right"),
    zoom: model.get("zoom") });
  const images = () => view.setImages(model.get("images"), model.get("image"));
  let token = 0;
  const load = async () => {
    const mine = ++token;
    const payload = model.get("payload");
    if (!payload || payload.byteLength === 0) {
      view.showMessage(model.get("message") || "no image");
      return;
    }
    try {
      const data = await decode(payload);
      if (mine === token) await view.setData(data);
    } catch (err) {
      view.showMessage(`cannot show this image: ${err.message}`, "error");
    }
  };
  const events = { "change:payload": load, "change:images": images, "change:image": images,
    "change:threshold": fromModel, "change:show_fov": fromModel, "change:left": fromModel,
    "change:right": fromModel, "change:zoom": fromModel };
  for (const [name, handler] of Object.entries(events)) model.on(name, handler);
  images();
  fromModel();
  load();
  return () => {
    for (const [name, handler] of Object.entries(events)) model.off(name, handler);
  };
}

export default { render };
