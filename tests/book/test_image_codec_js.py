"""unet_book/static/image_codec.js reads TIFFs and PNGs to the arrays Pillow gives (16-bit colour
to the samples written, which Pillow rounds to 8 bits), writes PNGs Pillow reads back exactly, and
rejects damaged or unsupported files with a plain Error that says why (run in Node)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from node_module import run_node
from PIL import Image, features

from unet_core.data.paths import data_dir

MODULE = Path(__file__).resolve().parents[2] / "unet_book" / "static" / "image_codec.js"

SIZE = (37, 23)  # (W, H): odd, so rows of sub-byte pixels are padded and tiles are clipped
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

DECODE = """
try {
  const {data: samples, ...meta} = await ic[data.fn](readFileSync(data.path));
  writeFileSync(data.out, Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength));
  console.log(JSON.stringify({...meta, type: samples.constructor.name}));
} catch (e) {
  console.log(JSON.stringify({error: e.message, name: e.constructor.name}));
}
"""


def _node(script: str, data: dict, tmp_path: Path):
    return run_node("image_codec.js", "ic", script, data, tmp_path)


def _decode(path: Path, tmp_path: Path, fn: str = "") -> tuple[dict, np.ndarray | None]:
    """The module's result for a file: its fields, and the samples as an (H, W, C) array."""
    fn = fn or ("decodePng" if path.suffix == ".png" else "decodeTiff")
    out = tmp_path / "samples.bin"
    got = _node(DECODE, {"fn": fn, "path": str(path), "out": str(out)}, tmp_path)
    if "error" in got:
        return got, None
    assert got["type"] == ("Uint16Array" if got["bits"] == 16 else "Uint8Array")
    dtype = "<u2" if got["bits"] == 16 else np.uint8
    return got, np.fromfile(out, dtype).reshape(got["height"], got["width"], got["channels"])


def _assert_decodes(path: Path, expected: np.ndarray, tmp_path: Path) -> dict:
    got, samples = _decode(path, tmp_path)
    assert samples is not None, got
    assert got["bits"] == 8 * expected.dtype.itemsize
    np.testing.assert_array_equal(samples, expected.reshape(*samples.shape[:2], -1))
    return got


def _error(data: bytes, fn: str, tmp_path: Path) -> dict:
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    got, _ = _decode(path, tmp_path, fn)
    assert "error" in got, f"{fn} decoded a file it should reject"
    return got


def _pillow(path: Path | io.BytesIO) -> np.ndarray:
    """Pillow's array, palettes as RGB(A) and bilevel as 0 / 255, as the module gives them."""
    image = Image.open(path)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    return np.asarray(image)


def _image(mode: str, seed: int = 0, size: tuple[int, int] = SIZE,
           levels: int = 256) -> Image.Image:
    """Random content (levels < 256: few values, so LZW meets long and self-referring strings)."""
    rng = np.random.default_rng(seed)
    w, h = size
    if mode in ("I;16", "I;16B"):
        a = rng.integers(0, 65536 if levels == 256 else levels, (h, w), dtype=np.uint16)
        return Image.frombytes(mode, size, a.astype("<u2" if mode == "I;16" else ">u2").tobytes())
    rgba = Image.fromarray(rng.integers(0, levels, (h, w, 4), dtype=np.uint8))
    return rgba.convert("RGB").quantize(200) if mode == "P" else rgba.convert(mode)


def _save_tiff(image: Image.Image, path: Path, **kwargs: object) -> Path:
    image.save(path, "TIFF", **kwargs)
    return path


def _set_tag(data: bytes, tag: int, value: int | None = None, scale: float = 1.0) -> bytes:
    """A little-endian TIFF with one inline SHORT or LONG tag of the first page changed."""
    buf = bytearray(data)
    ifd = struct.unpack_from("<I", buf, 4)[0]
    for i in range(struct.unpack_from("<H", buf, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", buf, entry)[0] == tag:
            fmt = "<H" if struct.unpack_from("<H", buf, entry + 2)[0] == 3 else "<I"
            old = struct.unpack_from(fmt, buf, entry + 8)[0]
            struct.pack_into(fmt, buf, entry + 8, int(old * scale) if value is None else value)
            return bytes(buf)
    raise AssertionError(f"the TIFF has no tag {tag}")


# --------------------------------------------------------------------------- a PNG writer


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _filtered(rows: np.ndarray, step: int) -> bytes:
    """Row y filtered with type y % 5 (none, Sub, Up, Average, Paeth), so every type is met."""
    out, prior = [], np.zeros(rows.shape[1], np.int32)
    for y, row in enumerate(rows.astype(np.int32)):
        a = np.concatenate([np.zeros(step, np.int32), row[:-step]])
        c = np.concatenate([np.zeros(step, np.int32), prior[:-step]])
        pa, pb, pc = np.abs(prior - c), np.abs(a - c), np.abs(a + prior - 2 * c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, prior, c))
        predicted = [0, a, prior, (a + prior) // 2, paeth][y % 5]
        out.append(bytes([y % 5]) + ((row - predicted) % 256).astype(np.uint8).tobytes())
        prior = row
    return b"".join(out)


def _png(samples: np.ndarray, colour: int, depth: int, *, palette: bytes = b"",
         trns: bytes = b"", interlace: int = 0, raw: bytes | None = None,
         idat: bytes | None = None) -> bytes:
    """A PNG of (H, W, C) samples, its IDAT split in three, with an ancillary chunk to skip."""
    h, w, channels = samples.shape
    if depth == 16:
        rows = samples.astype(">u2").view(np.uint8).reshape(h, -1)
    elif depth == 8:
        rows = samples.astype(np.uint8).reshape(h, -1)
    else:  # most significant bits first, each row padded to a byte
        shifts = np.arange(depth - 1, -1, -1)
        rows = np.packbits((samples.reshape(h, -1)[..., None] >> shifts & 1).reshape(h, -1), axis=1)
    if idat is None:
        idat = zlib.compress(_filtered(rows, max(1, channels * depth // 8)) if raw is None else raw)
    third = len(idat) // 3
    parts = [idat[:third], idat[third:2 * third], idat[2 * third:]]
    return (PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0,
                                                        interlace))
            + _chunk(b"tEXt", b"Comment\0filters 0-4") + (palette and _chunk(b"PLTE", palette))
            + (trns and _chunk(b"tRNS", trns)) + b"".join(_chunk(b"IDAT", p) for p in parts)
            + _chunk(b"IEND", b""))


def _read_png(data: bytes) -> tuple[int, int, int, np.ndarray]:
    """(depth, colour type, filter types, rows) of a non-interlaced PNG, checking every CRC and
    (through zlib) the Adler-32 of the stream."""
    assert data[:8] == PNG_SIGNATURE
    at, idat, header = 8, b"", b""
    while at < len(data):
        (length,), kind = struct.unpack_from(">I", data, at), data[at + 4:at + 8]
        body = data[at + 8:at + 8 + length]
        assert struct.unpack_from(">I", data, at + 8 + length)[0] == zlib.crc32(kind + body)
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        at += 12 + length
    w, h, depth, colour, *_ = struct.unpack(">IIBBBBB", header)
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, -1)
    return depth, colour, int(rows[:, 0].max()), np.ascontiguousarray(rows[:, 1:])


# --------------------------------------------------------------------------------- tests


def test_the_module_is_offline_and_one_file() -> None:
    text = MODULE.read_text()
    assert "import " not in text.split("export", 1)[0].replace("No import", "")
    assert "http://" not in text and "https://" not in text


@pytest.mark.parametrize("compression", ["raw", "tiff_lzw", "packbits", "tiff_adobe_deflate"])
@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "1", "I;16", "I;16B"])
def test_pillow_tiffs_decode_to_pillows_array(mode, compression, tmp_path) -> None:  # noqa: ANN001
    path = _save_tiff(_image(mode, seed=len(mode)), tmp_path / "image.tif",
                      compression=compression, strip_size=300)  # libtiff: several strips
    got = _assert_decodes(path, _pillow(path), tmp_path)
    assert got["pages"] == 1
    if mode == "I;16B" and compression == "raw":
        assert path.read_bytes()[:2] == b"MM"  # Pillow writes big-endian only without libtiff


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_adobe_deflate"])
@pytest.mark.parametrize(("mode", "levels"), [("L", 256), ("L", 3), ("RGB", 256), ("RGBA", 5),
                                              ("I;16", 256), ("I;16", 7)])
def test_predictor_2_is_undone(mode, levels, compression, tmp_path) -> None:  # noqa: ANN001
    image = _image(mode, seed=3, levels=levels)
    path = _save_tiff(image, tmp_path / "image.tif", compression=compression, tiffinfo={317: 2})
    assert Image.open(path).tag_v2[317] == 2
    expected = _pillow(path)
    np.testing.assert_array_equal(expected, np.asarray(image))
    _assert_decodes(path, expected, tmp_path)


@pytest.mark.parametrize("compression", ["raw", "packbits"])
def test_predictor_2_is_ignored_where_libtiff_ignores_it(compression, tmp_path) -> None:  # noqa: ANN001
    """Pillow writes the tag into PackBits and raw files but not differenced samples."""
    image = _image("RGB", seed=4)
    path = _save_tiff(image, tmp_path / "image.tif", compression=compression, tiffinfo={317: 2})
    assert Image.open(path).tag_v2[317] == 2
    _assert_decodes(path, np.asarray(image), tmp_path)


@pytest.mark.parametrize(("levels", "size"), [(256, (131, 97)), (2, (131, 97)), (1, SIZE)])
def test_lzw_clears_its_table_and_meets_long_strings(levels, size, tmp_path) -> None:  # noqa: ANN001
    """37 kB of noise makes libtiff clear the table (code 256) several times; two levels make
    long strings and codes that refer to the entry being defined; one level a single run."""
    image = _image("RGB", seed=5, size=size, levels=levels)
    path = _save_tiff(image, tmp_path / "image.tif", compression="tiff_lzw")
    _assert_decodes(path, np.asarray(image), tmp_path)


TIFFFILE_CASES = {  # name: (dtype, channels, tifffile.imwrite arguments)
    "rgb16-deflate-predictor": (np.uint16, 3, {"compression": "zlib", "predictor": True}),
    "rgb16-big-endian-deflate-predictor": (np.uint16, 3, {"compression": "zlib", "predictor": True,
                                                          "byteorder": ">"}),
    "rgba16-big-endian": (np.uint16, 4, {"byteorder": ">", "rowsperstrip": 4}),
    "rgb8-big-endian-strips": (np.uint8, 3, {"byteorder": ">", "rowsperstrip": 5}),
    "rgb8-tiles-deflate-predictor": (np.uint8, 3, {"tile": (16, 16), "compression": "zlib",
                                                   "predictor": True}),
    "grey16-big-endian-tiles": (np.uint16, 1, {"tile": (16, 32), "byteorder": ">"}),
    "rgb8-planar": (np.uint8, 3, {"planarconfig": "separate", "rowsperstrip": 8}),
    "rgba16-planar-deflate-predictor": (np.uint16, 4, {"planarconfig": "separate",
                                                       "compression": "zlib", "predictor": True}),
}


@pytest.mark.parametrize("name", list(TIFFFILE_CASES))
def test_tifffile_tiffs_decode_to_the_samples_written(name, tmp_path) -> None:  # noqa: ANN001
    dtype, channels, kwargs = TIFFFILE_CASES[name]
    rng = np.random.default_rng(len(name))
    w, h = SIZE
    samples = rng.integers(0, np.iinfo(dtype).max + 1, (h, w, channels), dtype=dtype)
    samples = samples[..., 0] if channels == 1 else samples
    path = tmp_path / "image.tif"
    photometric = "rgb" if channels >= 3 else "minisblack"
    planes = kwargs.get("planarconfig") == "separate"  # then tifffile wants (C, H, W)
    stored = np.moveaxis(samples, -1, 0) if planes else samples
    tifffile.imwrite(path, stored, photometric=photometric, **kwargs)
    np.testing.assert_array_equal(tifffile.imread(path), stored)
    assert tifffile.TiffFile(path).pages[0].planarconfig == (2 if planes else 1)
    _assert_decodes(path, samples, tmp_path)


def test_pillow_rounds_16_bit_rgb_which_the_module_keeps(tmp_path) -> None:
    samples = np.random.default_rng(6).integers(0, 65536, (23, 37, 3), dtype=np.uint16)
    tifffile.imwrite(path := tmp_path / "image.tif", samples, photometric="rgb")
    pillow = np.asarray(Image.open(path))
    assert pillow.dtype == np.uint8 and np.array_equal(pillow, samples >> 8)
    _assert_decodes(path, samples, tmp_path)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_white_is_zero_is_inverted(dtype, tmp_path) -> None:  # noqa: ANN001
    samples = np.random.default_rng(7).integers(0, np.iinfo(dtype).max + 1, (23, 37), dtype=dtype)
    tifffile.imwrite(path := tmp_path / "image.tif", samples, photometric="miniswhite")
    expected = np.iinfo(dtype).max - samples
    if dtype == np.uint8:
        np.testing.assert_array_equal(_pillow(path), expected)
    _assert_decodes(path, expected, tmp_path)


def test_the_first_of_several_pages(tmp_path) -> None:
    pages = [_image("RGB", seed=s) for s in range(3)]
    path = tmp_path / "pages.tif"
    pages[0].save(path, "TIFF", compression="tiff_lzw", save_all=True, append_images=pages[1:])
    assert getattr(Image.open(path), "n_frames", 1) == 3
    assert _assert_decodes(path, np.asarray(pages[0]), tmp_path)["pages"] == 3
    stack = np.random.default_rng(8).integers(0, 65536, (2, 23, 37), dtype=np.uint16)
    tifffile.imwrite(path := tmp_path / "stack.tif", stack, byteorder=">")
    assert _assert_decodes(path, stack[0], tmp_path)["pages"] == 2


PILLOW_PNGS = {  # name: (image, save arguments)
    "grey8": ("L", {}), "grey16": ("I;16", {}), "rgb8": ("RGB", {}), "rgba8": ("RGBA", {}),
    "grey-alpha8": ("LA", {}), "palette8": ("P", {}), "palette4": ("P4", {"bits": 4}),
    "palette2": ("P4", {"bits": 2}), "palette1": ("P4", {"bits": 1}),
    "palette-transparency": ("P4", {"transparency": 1}), "bilevel": ("1", {}),
}


@pytest.mark.parametrize("name", list(PILLOW_PNGS))
def test_pillow_pngs_decode_to_pillows_array(name, tmp_path) -> None:  # noqa: ANN001
    mode, kwargs = PILLOW_PNGS[name]
    image = _image("RGB", seed=9).quantize(16) if mode == "P4" else _image(mode, seed=9)
    image.save(path := tmp_path / "image.png", "PNG", **kwargs)
    if "bits" in kwargs:
        assert path.read_bytes()[24] == kwargs["bits"]  # IHDR bit depth
    _assert_decodes(path, _pillow(path), tmp_path)


PNG_CASES = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4),
             (3, 8), (4, 8), (4, 16), (6, 8), (6, 16)]


@pytest.mark.parametrize(("colour", "depth"), PNG_CASES)
def test_every_colour_type_depth_and_filter(colour, depth, tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(10 * colour + depth)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    w, h = SIZE
    dtype = np.uint16 if depth == 16 else np.uint8
    samples = rng.integers(0, 2**depth, (h, w, channels), dtype=dtype)
    palette = rng.integers(0, 256, (2**depth, 3), dtype=np.uint8) if colour == 3 else None
    path = tmp_path / "image.png"
    path.write_bytes(_png(samples, colour, depth,
                          palette=b"" if palette is None else palette.tobytes()))
    if colour == 3:
        expected = palette[samples[..., 0]]
    elif depth < 8:
        expected = (samples.astype(int) * 255 // (2**depth - 1)).astype(np.uint8)
    else:
        expected = samples
    _assert_decodes(path, expected, tmp_path)
    pillow = _pillow(path)
    if depth == 16 and colour != 0:  # Pillow rounds 16-bit colour to 8 bits, grey+alpha as RGBA
        grey_alpha = samples[..., [0, 0, 0, 1]] if colour == 4 else samples
        np.testing.assert_array_equal(pillow, grey_alpha >> 8)
    else:
        np.testing.assert_array_equal(pillow.reshape(expected.shape), expected)


def test_palette_transparency_gives_rgba(tmp_path) -> None:
    rng = np.random.default_rng(11)
    samples = rng.integers(0, 12, (23, 37, 1), dtype=np.uint8)  # indices 10, 11 have no tRNS
    palette = rng.integers(0, 256, (12, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, 10, dtype=np.uint8)
    path = tmp_path / "image.png"
    path.write_bytes(_png(samples, 3, 8, palette=palette.tobytes(), trns=alpha.tobytes()))
    expected = np.concatenate([palette, np.r_[alpha, 255, 255][:, None]], 1)[samples[..., 0]]
    np.testing.assert_array_equal(_pillow(path), expected)
    _assert_decodes(path, expected, tmp_path)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_encoded_pngs_read_back_exactly(channels, bits, tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(channels + bits)
    w, h = SIZE
    dtype = np.uint16 if bits == 16 else np.uint8
    samples = rng.integers(0, 2**bits, (h, w, channels), dtype=dtype)
    out = tmp_path / "encoded.png"
    got = _node(f"""
const samples = {"Uint16Array" if bits == 16 else "Uint8Array"}.from(data.samples);
const png = await ic.encodePng({w}, {h}, {channels}, {bits}, samples);
writeFileSync(data.out, png);
const back = await ic.decodePng(png.buffer);  // an ArrayBuffer will do
console.log(JSON.stringify({{sniff: ic.sniff(png), type: png.constructor.name, bits: back.bits,
                            same: back.data.every((v, i) => v === samples[i])}}));
""", {"samples": samples.ravel().tolist(), "out": str(out)}, tmp_path)
    assert got == {"sniff": "png", "type": "Uint8Array", "bits": bits, "same": True}
    depth, colour, filters, rows = _read_png(out.read_bytes())
    assert (depth, colour, filters) == (bits, {1: 0, 2: 4, 3: 2, 4: 6}[channels], 0)
    np.testing.assert_array_equal(rows.view(">u2" if bits == 16 else np.uint8).reshape(h, w, -1),
                                  samples)
    pillow = np.asarray(Image.open(out))
    if bits == 8 or channels == 1:  # 16-bit grey: Pillow's "I;16", uint16
        np.testing.assert_array_equal(pillow.reshape(samples.shape), samples)
    else:
        rounded = samples[..., [0, 0, 0, 1]] if channels == 2 else samples
        np.testing.assert_array_equal(pillow, rounded >> 8)


def test_encode_png_rejects_what_it_cannot_write(tmp_path) -> None:
    got = _node("""
const errors = [];
for (const args of [[2, 2, 5, 8, new Uint8Array(20)], [2, 2, 3, 12, new Uint16Array(12)],
                    [2, 2, 1, 8, new Uint8Array(3)], [0, 2, 1, 8, []]]) {
  try { await ic.encodePng(...args); errors.push(null); } catch (e) { errors.push(e.message); }
}
console.log(JSON.stringify(errors));
""", {}, tmp_path)
    assert got[0] == "encodePng writes 1 to 4 channels of 8 or 16 bits, not 5 channels of 8 bits"
    assert got[1].endswith("not 3 channels of 12 bits")
    assert got[2] == "encodePng got 3 samples where 2 x 2 x 1 = 4 belong"
    assert got[3].startswith("encodePng needs a positive integer size")


def _tiff_bytes(mode: str = "RGB", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    _image(mode).save(buffer, "TIFF", **kwargs)
    return buffer.getvalue()


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    _image("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def _with_bad_crc() -> bytes:
    data = bytearray(_png_bytes())
    data[data.index(b"IDAT") + 10] ^= 0x40
    return bytes(data)


def _bigtiff() -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((4, 4), np.uint8), bigtiff=True)
    return buffer.getvalue()


BAD_FILES = {  # name: (bytes, function, the message or how it starts)
    "tiff-truncated": (lambda: _tiff_bytes()[:1300], "decodeTiff",  # the IFD first
                       "truncated TIFF: strip 0 needs bytes up to 2693 but the file has 1300"),
    "tiff-lzw-truncated": (lambda: _tiff_bytes(compression="tiff_lzw")[:1300], "decodeTiff",
                           "truncated TIFF: the directory (IFD) of page 1 needs bytes up to "),
    "tiff-empty": (lambda: b"", "decodeTiff",
                   "truncated TIFF: the file has 0 bytes, fewer than its header"),
    "tiff-jpeg": (lambda: _set_tag(_tiff_bytes(), 259, 7), "decodeTiff",
                  "TIFF compression 7 (JPEG) is not supported: only none, LZW, PackBits and "
                  "Deflate"),
    "tiff-short-lzw-strip": (lambda: _set_tag(_tiff_bytes(compression="tiff_lzw"), 279,
                                              scale=0.5), "decodeTiff",
                             "corrupt TIFF: strip 0 decodes to "),
    "tiff-cmyk": (lambda: _tiff_bytes("CMYK"), "decodeTiff",
                  "TIFF PhotometricInterpretation 5 (CMYK) is not supported: only WhiteIsZero, "
                  "BlackIsZero, RGB and palette"),
    "tiff-float": (lambda: _tiff_bytes("F"), "decodeTiff",
                   "TIFF SampleFormat 3 (floating point) is not supported: only unsigned integers"),
    "tiff-planar-3": (lambda: _set_tag(_tiff_bytes(), 284, 3), "decodeTiff",
                      "corrupt TIFF: PlanarConfiguration 3, not 1 or 2"),
    "bigtiff": (_bigtiff, "decodeTiff", "BigTIFF is not supported: only classic TIFF"),
    "png-as-tiff": (_png_bytes, "decodeTiff", "not a TIFF file: it does not start with II or MM"),
    "png-truncated": (lambda: _png_bytes()[:len(_png_bytes()) // 2], "decodePng",
                      "truncated PNG: chunk IDAT at byte "),
    "png-bad-crc": (_with_bad_crc, "decodePng", "corrupt PNG (chunk IDAT: CRC mismatch)"),
    "png-interlaced": (lambda: _png(np.zeros((2, 2, 1), np.uint8), 0, 8, interlace=1),
                       "decodePng",
                       "interlaced (Adam7) PNG is not supported: only non-interlaced PNG"),
    "png-filter-7": (lambda: _png(np.zeros((2, 2, 1), np.uint8), 0, 8, raw=b"\0\0\0\7\0\0"),
                     "decodePng", "corrupt PNG: row 1 has filter type 7, where only 0 to 4 exist"),
    "png-short-data": (lambda: _png(np.zeros((2, 2, 1), np.uint8), 0, 8, raw=b"\0\0\0\0"),
                       "decodePng",
                       "truncated PNG: its image data holds 4 bytes where 6 are needed"),
    "png-bad-zlib": (lambda: _png(np.zeros((2, 2, 1), np.uint8), 0, 8, idat=b"not zlib"),
                     "decodePng",
                     "corrupt PNG: its Deflate data does not decompress"),
    "png-bad-depth": (lambda: PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 4,
                                                                          2, 0, 0, 0))
                      + _chunk(b"IEND", b""),
                      "decodePng", "corrupt PNG: colour type 2 with bit depth 4 does not exist"),
    "tiff-as-png": (_tiff_bytes, "decodePng", "not a PNG file: its signature is missing"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_throw_a_clear_error(name, tmp_path) -> None:  # noqa: ANN001
    make, fn, message = BAD_FILES[name]
    got = _error(make(), fn, tmp_path)
    assert got["name"] == "Error", got
    assert got["error"].startswith(message), got["error"]


def test_damaged_files_never_throw_a_type_or_range_error(tmp_path) -> None:
    """Every cut of a TIFF and a PNG and hundreds of random byte changes: either an image or a
    plain Error, never a TypeError or RangeError from inside (nor a hang)."""
    files = {"tiff-lzw": _tiff_bytes("RGBA", compression="tiff_lzw", strip_size=500),
             "tiff-packbits": _tiff_bytes("L", compression="packbits"),
             "tiff-deflate": _tiff_bytes("I;16", compression="tiff_adobe_deflate"),
             "png": _png_bytes()}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    got = _node("""
let seed = 12345;
const random = (n) => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed >>> 8) % n;
};
const outcomes = {};
for (const name of data.names) {
  const file = readFileSync(data.dir + "/" + name);
  const decode = name === "png" ? ic.decodePng : ic.decodeTiff;
  const variants = [];
  for (let n = 0; n < file.length; n += 13) variants.push(file.subarray(0, n));
  for (let k = 0; k < 300; k++) {
    const copy = Uint8Array.from(file);
    for (let j = 0; j <= random(3); j++) {
      const at = random(Math.min(copy.length, 300));  // in the header, the end (IFD), anywhere
      copy[k < 100 ? at : k < 200 ? copy.length - 1 - at : random(copy.length)] = random(256);
    }
    variants.push(copy);
  }
  for (const v of variants) {
    let outcome = "image";
    try { await decode(v); } catch (e) { outcome = e.constructor.name; }
    outcomes[name + " " + outcome] = (outcomes[name + " " + outcome] ?? 0) + 1;
  }
}
console.log(JSON.stringify(outcomes));
""", {"names": list(files), "dir": str(tmp_path)}, tmp_path)
    assert {key.split()[1] for key in got} <= {"image", "Error"}, got
    assert all(got.get(f"{name} Error", 0) > 50 for name in files), got


def test_sniff_names_the_format_from_its_magic_bytes(tmp_path) -> None:
    files = {}
    for fmt in ["PNG", "TIFF", "JPEG", "GIF", "BMP"] + (["WEBP"] if features.check("webp") else []):
        buffer = io.BytesIO()
        _image("RGB").save(buffer, fmt)
        files[fmt.lower()] = buffer.getvalue()[:16]
    big_endian = io.BytesIO()
    _image("I;16B").save(big_endian, "TIFF")
    files["tiff-big-endian"] = big_endian.getvalue()[:16]
    files["bigtiff"] = _bigtiff()[:16]
    files["noise"] = bytes(np.random.default_rng(12).integers(0, 256, 16, dtype=np.uint8))
    files["empty"] = b""
    files["png-start"] = PNG_SIGNATURE[:4]
    got = _node("console.log(JSON.stringify(Object.fromEntries(Object.entries(data).map("
                "([k, v]) => [k, ic.sniff(Uint8Array.from(v).buffer)]))));",
                {k: list(v) for k, v in files.items()}, tmp_path)
    expected = {k: k.split("-")[0] for k in files}
    expected.update({"bigtiff": "tiff", "noise": None, "empty": None, "png-start": None})
    assert got == expected


def test_drive_image_decodes_to_pillows_array(tmp_path) -> None:
    path = data_dir() / "DRIVE" / "test" / "images" / "01_test.tif"
    if not path.exists():
        pytest.skip(f"no DRIVE data at {path}")
    expected = np.asarray(Image.open(path))
    assert expected.shape == (584, 565, 3)
    got = _assert_decodes(path, expected, tmp_path)
    assert got["pages"] == 1
