// Image files in the browser, read exactly: the TIFF and 16-bit PNG inputs, the PNG outputs.
//
// createImageBitmap gives 8-bit RGBA only: 16-bit samples are rounded, alpha may come
// premultiplied and colour-managed, and most browsers cannot read TIFF at all (DRIVE's
// images are LZW TIFFs). A page that feeds a network the pixels Python feeds it therefore
// decodes the files here, to the array np.asarray(Image.open(f)) gives
// (tests/book/test_image_codec_js.py compares them):
//
//   * decodeTiff: baseline TIFF of either byte order, first page only; strips or tiles;
//     no compression, LZW, PackBits, Deflate; predictor 2; 1-, 8- and 16-bit samples;
//     WhiteIsZero, BlackIsZero, RGB and palette; 1 to 4 samples per pixel, chunky or planar.
//   * decodePng: every non-interlaced PNG (all colour types and bit depths, all filters).
//   * encodePng: 1 to 4 channels of 8 or 16 bits, for the masks and maps the page saves.
//   * sniff: the format from the magic bytes.
//
// The decoders take a Uint8Array or ArrayBuffer and return {width, height, channels, bits,
// data} (decodeTiff adds pages, the file's page count), data the (H, W, C) row-major
// samples, a Uint8Array (bits 8) or Uint16Array (bits 16). Where that is not Pillow's array:
// palettes come as RGB (RGBA where a PNG has tRNS), as Pillow's convert("RGB" / "RGBA");
// 1-bit images as 0 / 255 bytes, as its convert("L") (2- and 4-bit grey PNGs are 0..255 in
// Pillow too); 16-bit colour keeps its 16 bits, which Pillow rounds to 8. Alpha comes as
// stored (a TIFF's associated alpha premultiplied, as Pillow's "RGBa"); a grey or RGB PNG's
// tRNS colour key is ignored, as Pillow's array ignores it. Anything else, or a damaged
// file, throws a plain Error whose message says what was found and what is supported.
//
// No import and no network: Deflate is the platform's (De)CompressionStream("deflate").

const fail = (message) => { throw new Error(message); };
const need = (ok, message) => ok || fail(message);

function asBytes(bytes) {
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  if (ArrayBuffer.isView(bytes)) {
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  return fail(`expected a Uint8Array or ArrayBuffer, got ${bytes?.constructor?.name ?? bytes}`);
}

// Our own messages are plain Errors; anything else thrown inside a decoder is a bug meeting a
// damaged file, and is reported as such rather than as a TypeError from deep inside.
async function guarded(what, decode) {
  try {
    return await decode();
  } catch (e) {
    throw e.constructor === Error ? e : new Error(`corrupt ${what} (${e.name}: ${e.message})`);
  }
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

async function pipe(bytes, stream) {
  const piped = new Blob([bytes]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(piped).arrayBuffer());
}

// zlib-wrapped Deflate, as both TIFF (compression 8 and 32946) and PNG store it.
async function inflate(bytes, what) {
  try {
    return await pipe(bytes, new DecompressionStream("deflate"));
  } catch (e) {
    return fail(`corrupt ${what}: its Deflate data does not decompress (${e.message})`);
  }
}

const MAX_SAMPLES = 2 ** 29;

export function sniff(bytes) {
  const b = asBytes(bytes);
  const at = (text, start = 0) => [...text].every((ch, i) => b[start + i] === ch.charCodeAt(0));
  if (at("\x89PNG\r\n\x1a\n")) return "png";
  if (at("II*\0") || at("MM\0*") || at("II+\0") || at("MM\0+")) return "tiff";  // + : BigTIFF
  if (at("\xff\xd8\xff")) return "jpeg";
  if (at("GIF87a") || at("GIF89a")) return "gif";
  if (at("RIFF") && at("WEBP", 8)) return "webp";
  if (at("BM")) return "bmp";
  return null;
}

// ---------------------------------------------------------------------------------- TIFF

const COMPRESSION = { 2: "CCITT RLE", 3: "CCITT G3 fax", 4: "CCITT G4 fax", 6: "old-style JPEG",
  7: "JPEG", 34712: "JPEG 2000", 34887: "LERC", 34925: "LZMA", 50000: "Zstandard", 50001: "WebP" };
const PHOTOMETRIC = { 0: "WhiteIsZero", 1: "BlackIsZero", 2: "RGB", 3: "palette",
  4: "transparency mask", 5: "CMYK", 6: "YCbCr", 8: "CIELab", 9: "ICCLab", 10: "ITULab",
  32844: "LogL", 32845: "LogLuv", 34892: "LinearRaw" };
const named = (table, key) => (table[key] ? ` (${table[key]})` : "");

// TIFF 6 LZW as libtiff writes it: codes MSB first, 256 clears the table, 257 ends the
// strip, 258 on are table entries. The code width starts at 9 bits and grows one code
// EARLY ("early change"): as soon as the next free code is 511, 1023 or 2047, i.e.
// 2^width - 1, not 2^width as in GIF; it stays at 12. An entry is the previous code's string
// plus the first byte of the current one, and the two strings lie side by side in the
// output, so an entry is kept as (offset, length) into the output, not as a string.
function lzwDecode(data, size) {
  need(!(data[0] === 0 && data[1] & 1),
    "old-style (pre-TIFF 6) LZW is not supported: only TIFF 6 LZW as libtiff writes it");
  const out = new Uint8Array(size + 4096);  // one code writes at most 4096 bytes
  const offset = new Int32Array(4096);
  const length = new Int32Array(4096);
  let p = 0, bit = 0, width = 9, next = 258, prevStart = -1, prevLength = 0;
  while (p < size && bit + width <= 8 * data.length) {
    const i = bit >> 3;
    const window = (data[i] << 16) | ((data[i + 1] ?? 0) << 8) | (data[i + 2] ?? 0);
    const code = (window >> (24 - (bit & 7) - width)) & ((1 << width) - 1);
    bit += width;
    if (code === 257) break;
    if (code === 256) { width = 9; next = 258; prevStart = -1; continue; }
    const start = p;
    if (code < 256) {
      out[p++] = code;
    } else if (prevStart >= 0 && code < next) {
      out.copyWithin(p, offset[code], offset[code] + length[code]);
      p += length[code];
    } else if (prevStart >= 0 && code === next) {  // the entry being defined: prev + prev[0]
      out.copyWithin(p, prevStart, prevStart + prevLength);
      p += prevLength;
      out[p++] = out[prevStart];
    } else {
      fail(`corrupt TIFF: LZW code ${code} appears where only codes below ${next} are defined`);
    }
    if (prevStart >= 0 && next < 4096) {
      offset[next] = prevStart;
      length[next++] = prevLength + 1;
      if (next === (1 << width) - 1 && width < 12) width++;
    }
    prevStart = start;
    prevLength = p - start;
  }
  return out.subarray(0, Math.min(p, size));
}

// PackBits: a signed count n, then n + 1 literal bytes (n >= 0) or one byte repeated 1 - n
// times (n < 0; -128 is a no-op).
function packBitsDecode(data, size) {
  const out = new Uint8Array(size + 128);
  let p = 0, i = 0;
  while (p < size && i < data.length) {
    const n = (data[i++] << 24) >> 24;
    if (n >= 0) {
      const literal = data.subarray(i, i + n + 1);
      out.set(literal, p);
      p += literal.length;
      i += n + 1;
    } else if (n !== -128 && i < data.length) {
      out.fill(data[i++], p, p + 1 - n);
      p += 1 - n;
    }
  }
  return out.subarray(0, Math.min(p, size));
}

// The samples of one decoded strip or tile: bytes as they are, 16-bit words in the file's
// byte order, 1-bit samples unpacked (most significant bit first, rows padded to a byte).
function tiffSamples(raw, rows, cols, spp, bits, littleEndian) {
  const n = rows * cols * spp;
  if (bits === 8) return raw.slice(0, n);
  if (bits === 16) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    return Uint16Array.from({ length: n }, (_, i) => view.getUint16(2 * i, littleEndian));
  }
  const out = new Uint8Array(n);
  const rowBytes = Math.ceil(cols / 8);
  for (let r = 0; r < rows; r++) {
    for (let x = 0; x < cols; x++) {
      out[r * cols + x] = (raw[r * rowBytes + (x >> 3)] >> (7 - (x & 7))) & 1;
    }
  }
  return out;
}

// Predictor 2, horizontal differencing: each sample is stored as its difference to the same
// channel of the pixel on its left, modulo 2^bits; a running sum along each row of the
// strip or tile restores it (the typed array wraps the sum for us).
function undoDifferencing(s, rows, cols, spp) {
  for (let r = 0; r < rows; r++) {
    const row = r * cols * spp;
    for (let i = row + spp; i < row + cols * spp; i++) s[i] += s[i - spp];
  }
}

export async function decodeTiff(bytes) {
  const b = asBytes(bytes);
  return guarded("TIFF", () => readTiff(b));
}

async function readTiff(b) {
  if (b.length < 8) fail(`truncated TIFF: the file has ${b.length} bytes, fewer than its header`);
  const littleEndian = b[0] === 0x49 && b[1] === 0x49;
  need(littleEndian || (b[0] === 0x4d && b[1] === 0x4d),
    "not a TIFF file: it does not start with II or MM");
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const check = (at, n, what = "a field") => need(at + n <= b.length,
    `truncated TIFF: ${what} needs bytes up to ${at + n} but the file has ${b.length}`);
  const u16 = (at, what) => (check(at, 2, what), view.getUint16(at, littleEndian));
  const u32 = (at, what) => (check(at, 4, what), view.getUint32(at, littleEndian));
  const magic = u16(2);
  if (magic === 43) fail("BigTIFF is not supported: only classic TIFF (version 42)");
  if (magic !== 42) fail(`not a TIFF file: version ${magic} where 42 belongs`);

  // The chain of image file directories: the first is decoded, the others only counted.
  const ifds = [];
  for (let at = u32(4); at !== 0; ) {
    if (ifds.includes(at)) fail("corrupt TIFF: its chain of pages (IFDs) loops");
    ifds.push(at);
    const what = `the directory (IFD) of page ${ifds.length}`;
    at = u32(at + 2 + 12 * u16(at, what), what);
  }
  if (ifds.length === 0) fail("corrupt TIFF: the file has no page (IFD)");
  const entries = new Map();
  for (let i = 0, at = ifds[0] + 2; i < u16(ifds[0]); i++, at += 12) entries.set(u16(at), at);
  // The values of an integer tag (BYTE, SHORT or LONG), or `fallback` where it is absent.
  const tag = (id, fallback) => {
    const e = entries.get(id);
    if (e === undefined) return fallback;
    const type = u16(e + 2), count = u32(e + 4), size = { 1: 1, 3: 2, 4: 4 }[type];
    if (!size) fail(`corrupt TIFF: tag ${id} has type ${type} where an unsigned integer belongs`);
    const at = count * size <= 4 ? e + 8 : u32(e + 8);
    check(at, count * size, `tag ${id}`);
    const read = [null, (k) => b[at + k], (k) => view.getUint16(at + 2 * k, littleEndian), null,
      (k) => view.getUint32(at + 4 * k, littleEndian)][size];
    return Array.from({ length: count }, (_, k) => read(k));
  };
  const one = (id, fallback) => tag(id, [fallback])[0];

  // What the first page holds, and whether this module reads it.
  const width = one(256), height = one(257), spp = one(277, 1);
  if (!width || !height) fail("corrupt TIFF: the first page has no ImageWidth or ImageLength");
  const depths = tag(258, [1]), bits = depths[0], format = one(339, 1);
  const unsupported = (what, only) => fail(`TIFF ${what} is not supported: only ${only}`);
  if (format !== 1) {
    const name = named({ 2: "signed integer", 3: "floating point" }, format);
    unsupported(`SampleFormat ${format}${name}`, "unsigned integers");
  }
  if (depths.some((d) => d !== bits)) unsupported(`BitsPerSample ${depths}`, "one depth for all");
  if (![1, 8, 16].includes(bits)) unsupported(`BitsPerSample ${bits}`, "8, 16 and 1 (bilevel)");
  const compression = one(259, 1);
  if (![1, 5, 8, 32773, 32946].includes(compression)) {
    unsupported(`compression ${compression}${named(COMPRESSION, compression)}`,
      "none, LZW, PackBits and Deflate");
  }
  const photometric = one(262, spp >= 3 ? 2 : 1);
  const allowed = { 0: [1, 2], 1: [1, 2], 2: [3, 4], 3: [1] }[photometric];
  if (!allowed) {
    unsupported(`PhotometricInterpretation ${photometric}${named(PHOTOMETRIC, photometric)}`,
      "WhiteIsZero, BlackIsZero, RGB and palette");
  }
  if (!allowed.includes(spp)) {
    unsupported(`${PHOTOMETRIC[photometric]} with ${spp} samples per pixel`, allowed.join(" or "));
  }
  if (bits === 1 && spp !== 1) unsupported(`1-bit image with ${spp} channels`, "one channel");
  if (photometric === 3 && bits !== 8) unsupported(`palette of ${bits}-bit indices`, "8-bit");
  if (one(266, 1) !== 1) unsupported("FillOrder 2 (least significant bit first)", "FillOrder 1");
  const planar = one(284, 1);
  need(planar === 1 || planar === 2, `corrupt TIFF: PlanarConfiguration ${planar}, not 1 or 2`);
  // libtiff applies the predictor only with the codecs that define it (LZW, Deflate) and
  // ignores the tag otherwise; Pillow writes Predictor 2 into PackBits and raw files as is.
  const predictor = [5, 8, 32946].includes(compression) ? one(317, 1) : 1;
  if (predictor !== 1 && predictor !== 2) {
    unsupported(`predictor ${predictor}${predictor === 3 ? " (floating point)" : ""}`,
      "none (1) and horizontal differencing (2)");
  }
  if (predictor === 2 && bits === 1) unsupported("predictor 2 with 1-bit samples", "8 and 16 bits");
  if (width * height * spp > MAX_SAMPLES) fail(`TIFF of ${width} x ${height} pixels is too large`);

  // Strips are tiles as wide as the image; the last strip may be short, a tile never is
  // (edge tiles are padded). Planar images store each channel's chunks after the previous.
  const tiled = entries.has(322), kind = tiled ? "tile" : "strip";
  const cols = tiled ? one(322) : width;
  const rowsPer = tiled ? one(323) : Math.min(one(278, height), height);
  need(cols && rowsPer && cols * rowsPer <= MAX_SAMPLES,
    `corrupt TIFF: ${kind}s of ${cols} x ${rowsPer} pixels`);
  const across = Math.ceil(width / cols), cells = across * Math.ceil(height / rowsPer);
  const planes = planar === 2 ? spp : 1, cspp = spp / planes;
  const offsets = tag(tiled ? 324 : 273, []), counts = tag(tiled ? 325 : 279, []);
  need(offsets.length >= cells * planes,
    `corrupt TIFF: ${offsets.length} ${kind}s listed where the image needs ${cells * planes}`);
  const samples = new (bits === 16 ? Uint16Array : Uint8Array)(width * height * spp);
  for (let k = 0; k < cells * planes; k++) {
    const cell = k % cells, plane = (k - cell) / cells;
    const y0 = Math.floor(cell / across) * rowsPer, x0 = (cell % across) * cols;
    const rows = tiled ? rowsPer : Math.min(rowsPer, height - y0);
    const size = rows * Math.ceil((cols * cspp * bits) / 8);
    const count = counts[k] ?? (compression === 1 ? size : fail(`corrupt TIFF: no ${kind} sizes`));
    check(offsets[k], count, `${kind} ${k}`);
    const data = b.subarray(offsets[k], offsets[k] + count);
    const raw = compression === 1 ? data
      : compression === 5 ? lzwDecode(data, size)
        : compression === 32773 ? packBitsDecode(data, size)
          : await inflate(data, `TIFF ${kind} ${k}`);
    need(raw.length >= size,
      `corrupt TIFF: ${kind} ${k} decodes to ${raw.length} bytes where ${size} are needed`);
    const chunk = tiffSamples(raw, rows, cols, cspp, bits, littleEndian);
    if (predictor === 2) undoDifferencing(chunk, rows, cols, cspp);
    const w = Math.min(cols, width - x0), h = Math.min(rows, height - y0);
    for (let r = 0; r < h; r++) {
      for (let x = 0; x < w; x++) {
        const dst = ((y0 + r) * width + x0 + x) * spp + plane, src = (r * cols + x) * cspp;
        for (let c = 0; c < cspp; c++) samples[dst + c] = chunk[src + c];
      }
    }
  }

  const pages = ifds.length, result = { width, height, channels: spp, bits: bits === 1 ? 8 : bits };
  if (bits === 1) samples.forEach((v, i) => { samples[i] = 255 * v; });
  if (photometric === 0) {  // WhiteIsZero: invert the grey channel, not the alpha
    const max = bits === 16 ? 65535 : 255;
    for (let i = 0; i < samples.length; i += spp) samples[i] = max - samples[i];
  }
  if (photometric !== 3) return { ...result, data: samples, pages };
  // A 16-bit ColorMap, all reds, then greens, then blues; Pillow keeps the high byte.
  const map = tag(320, []);
  if (map.length < 768) fail(`corrupt TIFF: a palette with ${map.length} of 768 ColorMap values`);
  const rgb = new Uint8Array(width * height * 3);
  samples.forEach((v, i) => {
    for (let c = 0; c < 3; c++) rgb[3 * i + c] = map[256 * c + v] >> 8;
  });
  return { ...result, channels: 3, data: rgb, pages };
}

// ----------------------------------------------------------------------------------- PNG

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// Undo the PNG filters (spec section 9). Each row starts with a filter type; its bytes are
// stored as the difference to a prediction from the byte one pixel to the left (a, `step`
// bytes back, 0 before the row), the byte above (b) and the one above-left (c): 0 none,
// 1 Sub a, 2 Up b, 3 Average floor((a + b) / 2), 4 Paeth: whichever of a, b, c lies nearest
// to a + b - c, ties in that order. Bytes, not samples: a 16-bit sample's two bytes are
// predicted separately, and sub-byte pixels use the byte to the left (step 1).
function unfilter(raw, height, stride, step) {
  const img = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const type = raw[y * (stride + 1)], src = y * (stride + 1) + 1, row = y * stride;
    if (type > 4) fail(`corrupt PNG: row ${y} has filter type ${type}, where only 0 to 4 exist`);
    for (let i = 0; i < stride; i++) {
      const a = i >= step ? img[row + i - step] : 0;
      const b = y > 0 ? img[row - stride + i] : 0;
      const c = y > 0 && i >= step ? img[row - stride + i - step] : 0;
      let predicted = 0;
      if (type === 1) predicted = a;
      else if (type === 2) predicted = b;
      else if (type === 3) predicted = (a + b) >> 1;
      else if (type === 4) {
        const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
        predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      img[row + i] = raw[src + i] + predicted;
    }
  }
  return img;
}

export async function decodePng(bytes) {
  const b = asBytes(bytes);
  return guarded("PNG", () => readPng(b));
}

async function readPng(b) {
  if (b.length < 8) fail(`truncated PNG: the file has ${b.length} bytes`);
  if (!PNG_SIGNATURE.every((v, i) => b[i] === v)) fail("not a PNG file: its signature is missing");
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const chunks = { IDAT: [] };
  for (let at = 8, type = ""; type !== "IEND"; ) {
    if (at + 12 > b.length) fail(`truncated PNG: the file ends at byte ${b.length}, before IEND`);
    const length = view.getUint32(at), end = at + 12 + length;
    type = String.fromCharCode(...b.subarray(at + 4, at + 8));
    need(end <= b.length,
      `truncated PNG: chunk ${type} at byte ${at} ends at byte ${end}, the file at ${b.length}`);
    need(crc32(b.subarray(at + 4, end - 4)) === view.getUint32(end - 4),
      `corrupt PNG (chunk ${type}: CRC mismatch)`);
    const data = b.subarray(at + 8, at + 8 + length);
    if (type === "IDAT") chunks.IDAT.push(data);
    else if (["IHDR", "PLTE", "tRNS"].includes(type)) chunks[type] ??= data;
    else if (type !== "IEND" && !(b[at + 4] & 0x20)) {  // lower case: ancillary, may be skipped
      fail(`PNG critical chunk ${type} is not supported: only IHDR, PLTE, IDAT and IEND`);
    }
    at = end;
  }
  const ihdr = chunks.IHDR, palette = chunks.PLTE, trns = chunks.tRNS;
  if (!ihdr || ihdr.length < 13) fail("corrupt PNG: it has no 13-byte IHDR chunk");
  const header = new DataView(ihdr.buffer, ihdr.byteOffset, 13);
  const width = header.getUint32(0), height = header.getUint32(4), depth = ihdr[8], type = ihdr[9];
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[type];
  const depths = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] }[type];
  need(depths?.includes(depth),
    `corrupt PNG: colour type ${type} with bit depth ${depth} does not exist`);
  need(ihdr[10] === 0 && ihdr[11] === 0,
    `corrupt PNG: compression ${ihdr[10]} and filter method ${ihdr[11]}, where only 0 exists`);
  if (ihdr[12] !== 0) fail("interlaced (Adam7) PNG is not supported: only non-interlaced PNG");
  need(width && height && width * height * 4 <= MAX_SAMPLES,
    `corrupt PNG: an image of ${width} x ${height} pixels`);
  if (type === 3 && !palette) fail("corrupt PNG: a palette image without a PLTE chunk");

  const stride = Math.ceil(width * channels * depth / 8);
  const raw = await inflate(concat(chunks.IDAT), "PNG");
  const needed = height * (stride + 1);
  need(raw.length >= needed,
    `truncated PNG: its image data holds ${raw.length} bytes where ${needed} are needed`);
  const img = unfilter(raw, height, stride, Math.max(1, channels * depth / 8));
  const n = width * height * channels;
  let samples = img;
  if (depth === 16) {  // big-endian in the file
    samples = Uint16Array.from({ length: n }, (_, i) => (img[2 * i] << 8) | img[2 * i + 1]);
  } else if (depth < 8) {  // packed MSB first, rows padded to a byte; grey scaled to 0..255
    const scale = type === 0 ? 255 / (2 ** depth - 1) : 1;
    samples = new Uint8Array(n);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const bit = x * depth, byte = img[y * stride + (bit >> 3)];
        samples[y * width + x] = ((byte >> (8 - depth - (bit & 7))) & (2 ** depth - 1)) * scale;
      }
    }
  }
  if (type === 3) {  // palette -> RGB, or RGBA where tRNS gives the entries an alpha
    const out = trns ? 4 : 3, rgb = new Uint8Array(width * height * out);
    samples.forEach((k, i) => {
      if (3 * k + 2 < palette.length) rgb.set(palette.subarray(3 * k, 3 * k + 3), out * i);
      if (trns) rgb[out * i + 3] = k < trns.length ? trns[k] : 255;
    });
    return { width, height, channels: out, bits: 8, data: rgb };
  }
  return { width, height, channels, bits: depth === 16 ? 16 : 8, data: samples };
}

function pngChunk(type, data) {
  const out = new Uint8Array(data.length + 12), view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let k = 0; k < 4; k++) out[4 + k] = type.charCodeAt(k);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

// data: the (H, W, C) samples, integers in 0..2^bits - 1 (a typed array or an Array).
export async function encodePng(width, height, channels, bits, data) {
  const type = { 1: 0, 2: 4, 3: 2, 4: 6 }[channels];
  need(type !== undefined && (bits === 8 || bits === 16),
    `encodePng writes 1 to 4 channels of 8 or 16 bits, not ${channels} channels of ${bits} bits`);
  need([width, height].every((k) => Number.isInteger(k) && k > 0),
    `encodePng needs a positive integer size, not ${width} x ${height}`);
  const n = width * channels, total = n * height;  // samples per row, in all
  need(data.length === total, `encodePng got ${data.length} samples where ${width} x ${height} x `
    + `${channels} = ${total} belong`);
  const stride = (n * bits) / 8;
  const raw = new Uint8Array(height * (stride + 1));  // filter type 0 (none) on every row
  for (let y = 0; y < height; y++) {
    const row = y * (stride + 1) + 1;
    for (let i = 0; i < n; i++) {
      const v = data[y * n + i];
      if (bits === 8) raw[row + i] = v;
      else { raw[row + 2 * i] = v >> 8; raw[row + 2 * i + 1] = v & 0xff; }
    }
  }
  const ihdr = new Uint8Array(13), view = new DataView(ihdr.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  ihdr[8] = bits;
  ihdr[9] = type;
  const idat = await pipe(raw, new CompressionStream("deflate"));  // zlib: header, Adler-32
  return concat([Uint8Array.from(PNG_SIGNATURE), pngChunk("IHDR", ihdr), pngChunk("IDAT", idat),
    pngChunk("IEND", new Uint8Array(0))]);
}
