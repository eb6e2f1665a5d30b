#!/usr/bin/env python3
"""Writes the PNG fixtures of Tests/DataPipelineTests/Fixtures/ (torch side of PNG reading).

Run with a Python that has torch, torchvision and Pillow (CI never runs this; tests read the files):

    python Tests/TorchFixtureScripts/make_png_fixtures.py

Every PNG colour type and bit depth the pipeline must read as Pillow does, plus Adam7 interlacing and
gamma/sRGB chunks (which Pillow ignores). Pillow writes the 8-bit files; it cannot write 16-bit colour or
interlaced PNGs, so `write_png` below does (plain zlib + the PNG chunk layout). Whatever wrote a file, the
expectations come from reading it back with Pillow, the way the seed reads images:
`Image.open(path).convert("RGB")`, then torchvision `Resize(256)`, `CenterCrop(224)`, `ToTensor()`,
`Normalize(mean, std)`.

Fixture formats (all little-endian, no headers):
  images/<name>.png            the PNGs (smooth synthetic scenes, so they compress to a few KB each).
  images/<name>.crop6.u8       the uint8 RGB crop (what `ToTensor` sees) sampled every 6th row and column
                               starting at 0: 38 x 38 x 3 bytes, HWC (the CRC below covers every byte; the
                               samples say by how much a failing crop differs).
  png_expectations.json        per image: what it exercises, decoded size, CRC-32 of Pillow's whole decoded RGB
                               image and of the whole 224 x 224 x 3 crop (so every byte is checked), resized
                               size, crop offsets, per-channel mean of the normalized tensor (float64) and a
                               few full-tensor samples.
"""
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "DataPipelineTests", "Fixtures"))
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def smooth_scene(w, h, seed):
    """Float RGB in 0...255: gradients and a few flat shapes, no noise (noise would not compress)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([127 + 110 * np.sin(xx / (w / (2.0 + c)) + c) * np.cos(yy / (h / 1.7)) for c in range(3)], -1)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
        x1, y1 = x0 + int(rng.integers(8, w // 3)), y0 + int(rng.integers(8, h // 3))
        img[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    return img.clip(0, 255)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_rows(samples, bit_depth):
    """samples: (rows, columns * channels) unsigned ints -> bytes per row, big-endian, sub-byte depths packed."""
    import numpy as np
    if bit_depth == 16:
        return [row.astype(">u2").tobytes() for row in samples]
    if bit_depth == 8:
        return [row.astype(np.uint8).tobytes() for row in samples]
    per_byte = 8 // bit_depth
    rows = []
    for row in samples:
        padded = np.zeros(-(-len(row) // per_byte) * per_byte, dtype=np.uint32)
        padded[: len(row)] = row
        groups = padded.reshape(-1, per_byte)
        shifts = [8 - bit_depth * (i + 1) for i in range(per_byte)]
        rows.append(bytes(int(sum(int(v) << s for v, s in zip(g, shifts))) for g in groups))
    return rows


def filtered(rows):
    """Each row with the Up filter (the first with None): smooth images then compress well."""
    out, previous = [], None
    for row in rows:
        if previous is None:
            out.append(b"\x00" + row)
        else:
            out.append(b"\x02" + bytes((a - b) & 0xFF for a, b in zip(row, previous)))
        previous = row
    return b"".join(out)


def write_png(path, samples, bit_depth, color_type, interlace=False, extra_chunks=b""):
    """samples: (h, w, channels) unsigned ints in the PNG's sample range."""
    h, w, _ = samples.shape
    if interlace:
        passes = [samples[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7]
        data = b"".join(filtered(pack_rows(p.reshape(p.shape[0], -1), bit_depth))
                        for p in passes if p.shape[0] and p.shape[1])
    else:
        data = filtered(pack_rows(samples.reshape(h, -1), bit_depth))
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra_chunks
                + chunk(b"IDAT", zlib.compress(data, 9)) + chunk(b"IEND", b""))


def make_fixtures():
    """(name, what it exercises, writer(path)) for every fixture."""
    import numpy as np
    from PIL import Image

    def pillow(mode, w, h, seed, **options):
        def write(path):
            Image.fromarray(smooth_scene(w, h, seed).astype(np.uint8)).convert(mode).save(path, "PNG", **options)
        return write

    def rgba(path):
        rgb = smooth_scene(300, 250, 2).astype(np.uint8)
        yy, xx = np.mgrid[0:250, 0:300]
        alpha = ((xx * 255) // 299).astype(np.uint8)
        alpha[60:140, 40:200] = 0  # fully transparent, colour still stored: convert("RGB") keeps it
        Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path, "PNG")

    def gray_alpha(path):
        gray = smooth_scene(263, 281, 3)[..., 1].astype(np.uint8)
        alpha = np.full_like(gray, 90)
        Image.fromarray(np.dstack([gray, alpha]), "LA").save(path, "PNG")

    def palette(colors, seed, w, h, transparency=None):
        def write(path):
            img = Image.fromarray(smooth_scene(w, h, seed).astype(np.uint8)).quantize(colors=colors)
            options = {} if transparency is None else {"transparency": bytes(transparency)}
            img.save(path, "PNG", **options)  # 16 colours or fewer: Pillow writes 4-bit indices
        return write

    def sixteen_bit(w, h, seed):
        # High bytes from the scene, low bytes a pattern through all 256 values (small to store), so keeping
        # the high byte and rounding to 8 bits give different pixels.
        high = smooth_scene(w, h, seed).astype(np.uint32)
        yy, xx = np.mgrid[0:h, 0:w]
        low = ((xx + 3 * yy) & 0xFF).astype(np.uint32)[..., None]
        return high * 256 + low

    def rgb16(path):
        # With gamma and sRGB chunks: Pillow keeps the high byte and ignores both chunks.
        v = sixteen_bit(310, 270, 6)
        gamma = chunk(b"gAMA", struct.pack(">I", 100000)) + chunk(b"sRGB", b"\x00")
        write_png(path, v, 16, 2, extra_chunks=gamma)

    def gray16(path):
        # Pillow reads 16-bit gray as I;16 and clips it to 255 in convert("RGB"): values around that edge.
        v = (smooth_scene(257, 300, 7)[..., 0] * 1.6).round().astype(np.uint32)
        write_png(path, v[..., None], 16, 0)

    def interlaced_rgb(path):
        write_png(path, smooth_scene(301, 263, 8).round().astype(np.uint32), 8, 2, interlace=True,
                  extra_chunks=chunk(b"gAMA", struct.pack(">I", 220000)))

    def interlaced_gray2(path):
        v = (smooth_scene(283, 259, 9)[..., 2] / 64).astype(np.uint32)  # 0...3
        write_png(path, v[..., None], 2, 0, interlace=True)

    def interlaced_rgba16(path):
        rgb = sixteen_bit(271, 266, 10)
        alpha = np.full(rgb.shape[:2] + (1,), 30000, dtype=np.uint32)
        write_png(path, np.concatenate([rgb, alpha], -1), 16, 6, interlace=True)

    return [
        ("rgb8_331x257", "8-bit RGB", pillow("RGB", 331, 257, 1)),
        ("rgba8_300x250", "8-bit RGBA, alpha dropped without compositing", rgba),
        ("gray8_257x300", "8-bit gray", pillow("L", 257, 300, 4)),
        ("gray_alpha8_263x281", "8-bit gray + alpha", gray_alpha),
        ("bilevel1_290x260", "1-bit gray", pillow("1", 290, 260, 5)),
        ("palette8_280x260", "8-bit palette", palette(200, 11, 280, 260)),
        ("palette4_trns_260x280", "4-bit palette with tRNS", palette(12, 12, 260, 280, transparency=range(0, 240, 20))),
        ("rgb16_gamma_310x270", "16-bit RGB with gAMA and sRGB", rgb16),
        ("gray16_257x300", "16-bit gray (clipped to 255)", gray16),
        ("interlaced_rgb8_301x263", "Adam7 8-bit RGB with gAMA", interlaced_rgb),
        ("interlaced_gray2_283x259", "Adam7 2-bit gray", interlaced_gray2),
        ("interlaced_rgba16_271x266", "Adam7 16-bit RGBA", interlaced_rgba16),
    ]


def main():
    import numpy as np
    import torch
    import torchvision.transforms as T
    from PIL import Image
    os.makedirs(os.path.join(FIXTURES, "images"), exist_ok=True)
    normalize = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    expectations = []
    for i, (name, kind, write) in enumerate(make_fixtures()):
        path = os.path.join(FIXTURES, "images", name + ".png")
        write(path)
        source = Image.open(path)
        rgb = source.convert("RGB")
        resized = T.Resize(256)(rgb)
        cropped = T.CenterCrop(224)(resized)
        crop = np.asarray(cropped, dtype=np.uint8)
        crop[::6, ::6].tofile(os.path.join(FIXTURES, "images", name + ".crop6.u8"))
        t = normalize(cropped)
        full = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])(rgb)
        assert torch.equal(t, full)
        rng = np.random.default_rng(1000 + i)
        samples = []
        for _ in range(8):
            c, y, x = int(rng.integers(0, 3)), int(rng.integers(0, 224)), int(rng.integers(0, 224))
            samples.append([c, y, x, float(t[c, y, x])])
        expectations.append(dict(
            name=name, kind=kind, pillow_mode=source.mode, interlaced=bool(source.info.get("interlace")),
            width=rgb.size[0], height=rgb.size[1],
            decoded_crc32=zlib.crc32(rgb.tobytes()), crop_crc32=zlib.crc32(crop.tobytes()),
            resized=[resized.size[0], resized.size[1]],
            crop_left=int(round((resized.size[0] - 224) / 2.0)), crop_top=int(round((resized.size[1] - 224) / 2.0)),
            channel_mean=[float(t[c].double().mean()) for c in range(3)],
            samples=samples))
        print(f"{name:28s} {source.mode:5s} {os.path.getsize(path):7d} bytes  {kind}")
    with open(os.path.join(FIXTURES, "png_expectations.json"), "w") as f:
        json.dump(expectations, f, indent=1)
    print("wrote", FIXTURES)


if __name__ == "__main__":
    main()
