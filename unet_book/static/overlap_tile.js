// The paper's overlap-tile inference (Sec. 2, Fig. 2) in the browser, the same plan as Python.
//
// unet_core.tiling is the reference; this module follows it line by line so that a page
// running the exported tile network (unet_book.browser_model, model.json) assembles exactly
// the logits predict_tiled assembles (tests/book/test_overlap_tile_js.py compares the plans,
// the mirrored tiles and the stitched outputs):
//
//   * planAxis: where the tiles of one axis go. Valid padding: tiles advance by the output
//     size rounded down to a multiple of 2**depth (one pooling grid), the first at -crop.
//     Same padding: tiles overlap by `overlap` pixels (a multiple of 2**depth), the image is
//     mirrored by overlap / 2 pixels first.
//   * mirrorIndex: whole-sample mirroring about the first and last pixel (... 2 1 0 1 2 ...),
//     periodic, so any context size works (a 1-pixel axis repeats its pixel).
//   * hannWindow: the blending window of same padding, sin^2(pi (i + 0.5) / n), never below
//     1e-3, rounded to float32 as torch does.
//   * Stitcher: the logits of each tile, clipped to the image, blended with the window and
//     divided by the summed weights (same padding) or written as they are, the later tile
//     over the earlier (valid padding: aligned tiles agree where they overlap).
//
// No import and no network: the page loads this file from the site.

export function mirrorIndex(i, size) {
  if (size === 1) return 0;
  const period = 2 * (size - 1);
  const k = ((i % period) + period) % period;
  return k < size ? k : period - k;
}

// plan: {padding, depth, tile, out, crop, overlap} as in model.json; size: pixels on the axis.
export function planAxis(plan, size) {
  const align = 2 ** plan.depth;
  if (plan.padding === "valid") {
    const stride = Math.floor(plan.out / align) * align;
    const n = size <= plan.out ? 1 : Math.ceil((size - plan.out) / stride) + 1;
    const starts = Array.from({ length: n }, (_, k) => k * stride - plan.crop);
    return { tile: plan.tile, out: plan.out, crop: plan.crop, stride, starts };
  }
  const overlap = Math.floor(plan.overlap / align) * align;
  const context = Math.floor(overlap / 2);
  const stride = plan.tile - overlap;
  const extended = size + 2 * context;
  const n = extended <= plan.tile ? 1 : Math.ceil((extended - plan.tile) / stride) + 1;
  const starts = Array.from({ length: n }, (_, k) => k * stride - context);
  return { tile: plan.tile, out: plan.tile, crop: 0, stride, starts };
}

export function hannWindow(n, floor = 1e-3) {
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = Math.max(Math.sin(Math.PI * (i + 0.5) / n) ** 2, floor);
  return w;
}

// The (C, tile, tile) input of the tile at (y, x) of a (C, H, W) float image, mirrored.
export function tileInput(image, channels, height, width, y, x, tile) {
  const rows = Int32Array.from({ length: tile }, (_, k) => mirrorIndex(y + k, height));
  const cols = Int32Array.from({ length: tile }, (_, k) => mirrorIndex(x + k, width));
  const out = new Float32Array(channels * tile * tile);
  for (let c = 0; c < channels; c++) {
    const plane = c * height * width;
    for (let r = 0; r < tile; r++) {
      const src = plane + rows[r] * width;
      const dst = (c * tile + r) * tile;
      for (let q = 0; q < tile; q++) out[dst + q] = image[src + cols[q]];
    }
  }
  return out;
}

// Every tile of an image, in Python's order (rows of tiles, each left to right).
export function tiles(plan, height, width) {
  const py = planAxis(plan, height);
  const px = planAxis(plan, width);
  const out = [];
  for (const y of py.starts) for (const x of px.starts) out.push({ y, x });
  return { planY: py, planX: px, positions: out };
}

export class Stitcher {
  constructor(plan, channels, height, width) {
    this.blend = plan.padding === "same";
    this.channels = channels;
    this.height = height;
    this.width = width;
    const { planY, planX } = tiles(plan, height, width);
    this.planY = planY;
    this.planX = planX;
    this.out = new Float32Array(channels * height * width);
    if (this.blend) {
      this.weight = new Float32Array(height * width);
      const wy = hannWindow(planY.tile);
      const wx = hannWindow(planX.tile);
      this.window = new Float32Array(planY.tile * planX.tile);
      for (let r = 0; r < planY.tile; r++) {
        for (let q = 0; q < planX.tile; q++) this.window[r * planX.tile + q] = wy[r] * wx[q];
      }
    }
  }

  // logits: (K, out, out) of the tile at (y, x), K = this.channels.
  add(y, x, logits) {
    const { planY, planX, height: h, width: w } = this;
    const oy = y + planY.crop;
    const ox = x + planX.crop;
    const y0 = Math.max(oy, 0);
    const y1 = Math.min(oy + planY.out, h);
    const x0 = Math.max(ox, 0);
    const x1 = Math.min(ox + planX.out, w);
    if (y0 >= y1 || x0 >= x1) return;
    const side = planX.out;
    for (let c = 0; c < this.channels; c++) {
      for (let r = y0; r < y1; r++) {
        const src = (c * planY.out + (r - oy)) * side - ox;
        const dst = (c * h + r) * w;
        for (let q = x0; q < x1; q++) {
          if (this.blend) {
            const wgt = this.window[(r - oy) * planX.tile + (q - ox)];
            this.out[dst + q] = Math.fround(this.out[dst + q] + Math.fround(logits[src + q] * wgt));
          } else {
            this.out[dst + q] = logits[src + q];
          }
        }
      }
    }
    if (this.blend) {
      for (let r = y0; r < y1; r++) {
        for (let q = x0; q < x1; q++) {
          const i = r * w + q;
          this.weight[i] = Math.fround(this.weight[i] + this.window[(r - oy) * planX.tile + (q - ox)]);
        }
      }
    }
  }

  // The assembled (K, H, W) logits.
  result() {
    if (!this.blend) return this.out;
    const n = this.height * this.width;
    const done = new Float32Array(this.out.length);
    for (let c = 0; c < this.channels; c++) {
      for (let i = 0; i < n; i++) done[c * n + i] = this.out[c * n + i] / this.weight[i];
    }
    return done;
  }
}

// Logits to the foreground probability, as unet_core.losses.foreground_probability: the
// sigmoid of one channel, or the softmax's second channel of two.
export function probability(logits, kind, pixels) {
  const p = new Float32Array(pixels);
  if (kind === "softmax") {
    for (let i = 0; i < pixels; i++) p[i] = 1 / (1 + Math.exp(logits[i] - logits[pixels + i]));
  } else {
    for (let i = 0; i < pixels; i++) p[i] = 1 / (1 + Math.exp(-logits[i]));
  }
  return p;
}
