#!/usr/bin/env python3
"""Writes the fixtures of Tests/WeightFilesTests/Fixtures (the committed ones are small, tens of KB).

Needs torch (and, for the reference safetensors file, the `safetensors` package). CI never runs this.

    python Tests/TorchFixtureScripts/make_weight_fixtures.py                # writes the fixtures
    python Tests/TorchFixtureScripts/make_weight_fixtures.py --header-length-only  # only the 0x180/0x280
        # safetensors files (header lengths whose first byte is 0x80)
    python Tests/TorchFixtureScripts/make_weight_fixtures.py --resnet50 PATH  # torchvision resnet50 of
        # random weights (about 100 MB, never committed); WeightFilesTests checks it when
        # RESNET50_PTH=PATH is set, against PATH + ".shapes.json" written next to it, and the same
        # weights in PATH + ".safetensors" (written by safetensors.torch.save_file, no metadata).

Every expected value lands in expected.json as exact decimal floats (float16, bfloat16 and float32 values
are all exactly representable as float64), so the Swift tests compare bit for bit.

The malformed files are built by hand: a pickle that names `os.system` is written as bytes and never
unpickled here.
"""
import argparse
import collections
import io
import json
import os
import struct
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "WeightFilesTests", "Fixtures")


def describe(t):
    """dtype, shape and flattened values (row-major, logical order) of a tensor."""
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        values = [float(v) for v in t.to(torch.float64).reshape(-1).tolist()]
    else:
        values = [int(v) for v in t.to(torch.int64).reshape(-1).tolist()]
    return {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "values": values}


def small_state_dict():
    """A bare state dict with every dtype the reader handles and views that share storage."""
    g = torch.Generator().manual_seed(1234)
    sd = collections.OrderedDict()
    sd["conv.weight"] = torch.randn(4, 3, 3, 3, generator=g)
    sd["param"] = torch.nn.Parameter(torch.randn(3, generator=g))           # _rebuild_parameter
    sd["half"] = torch.randn(5, generator=g).to(torch.float16)
    sd["bf16"] = torch.randn(2, 3, generator=g).to(torch.bfloat16)
    sd["double"] = torch.randn(3, generator=g).to(torch.float64)
    sd["i64"] = torch.arange(-3, 4, dtype=torch.int64) * 1_000_000_007       # needs 64 bits
    sd["i32"] = torch.tensor([-7, 0, 65536], dtype=torch.int32)
    sd["u8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    sd["i8"] = torch.tensor([-128, 0, 127], dtype=torch.int8)
    sd["mask"] = torch.tensor([True, False, True])
    sd["num_batches_tracked"] = torch.tensor(7)                               # 0-d int64
    base = torch.randn(3, 4, generator=g)
    sd["base"] = base
    sd["transposed"] = base.t()                                               # strides (1, 4)
    sd["slice"] = base[1:, 1:3]                                               # offset 5, strides (4, 1)
    sd["row"] = base[2]                                                       # offset 8
    sd["expanded"] = torch.randn(3, 1, generator=g).expand(3, 4)             # stride 0
    sd["half_view"] = sd["half"][1::2]                                        # float16 offset + stride 2
    sd["empty"] = torch.zeros(0, 3)
    sd["long_vector"] = torch.randn(300, generator=g)                         # BININT2 sizes
    for i in range(100):                                                      # > 256 memo entries
        sd[f"many.{i}"] = torch.tensor([float(i) + 0.5])
    return sd


def fusion_like_state_dict():
    """The seed's checkpoint shape: module state dict (OrderedDict with _metadata) plus scalars."""
    torch.manual_seed(5)
    model = torch.nn.Sequential(
        collections.OrderedDict([
            ("backbone", torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4))),
            ("meta_net", torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                             torch.nn.Linear(8, 6), torch.nn.ReLU())),
            ("head", torch.nn.Sequential(torch.nn.Linear(10, 5), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                         torch.nn.Linear(5, 2))),
        ]))
    model.train()
    model.backbone(torch.randn(2, 3, 6, 6))    # running stats and num_batches_tracked move off their init
    sd = model.state_dict()
    assert hasattr(sd, "_metadata")
    return sd


def save_zip(obj, path, folder=None):
    """torch.save to `path`; with `folder`, the archive's folder is renamed by rewriting the zip."""
    if folder is None:
        torch.save(obj, path)
        return
    buf = io.BytesIO()
    torch.save(obj, buf)   # a file object gets the folder name "archive"
    if folder == "archive":
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        return
    buf.seek(0)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            name = folder + info.filename[info.filename.index("/"):]
            dst.writestr(name, src.read(info.filename))


def rewrite_zip(src_path, dst_path, edit):
    """Copies a torch zip, letting `edit(name, data)` return new bytes (or None to drop the entry)."""
    with zipfile.ZipFile(src_path) as src, zipfile.ZipFile(dst_path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = edit(info.filename, src.read(info.filename))
            if data is not None:
                dst.writestr(info.filename, data)


def storage_dtypes(path):
    """Map storage key -> element size, read from torch.load's view of the file (for byte swapping)."""
    sizes = {}
    with zipfile.ZipFile(path) as z:
        import pickletools
        pkl = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    # Each persistent id is ('storage', <Global torch.XStorage>, key, location, numel); walk the opcodes.
    ops = list(pickletools.genops(pkl))
    elem = {"FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "DoubleStorage": 8, "LongStorage": 8,
            "IntStorage": 4, "ByteStorage": 1, "CharStorage": 1, "BoolStorage": 1, "ShortStorage": 2}
    memo, last_global = {}, None
    for i, (op, arg, _) in enumerate(ops):
        if op.name == "GLOBAL":
            last_global = arg.split(" ")[1]
        elif op.name in ("BINPUT", "LONG_BINPUT") and ops[i - 1][0].name == "GLOBAL":
            memo[arg] = ops[i - 1][1].split(" ")[1]
        elif op.name in ("BINGET", "LONG_BINGET") and arg in memo:
            last_global = memo[arg]
        elif op.name in ("BINUNICODE", "SHORT_BINUNICODE") and last_global in elem:
            sizes[arg] = elem[last_global]
            last_global = None
    return sizes


def big_endian_copy(src_path, dst_path):
    """The same checkpoint with byteorder 'big' and every storage byte-swapped."""
    sizes = storage_dtypes(src_path)

    def edit(name, data):
        if name.endswith("/byteorder"):
            return b"big"
        key = name.split("/data/")[-1] if "/data/" in name else None
        if key is not None and key in sizes and sizes[key] > 1:
            n = sizes[key]
            return b"".join(data[i:i + n][::-1] for i in range(0, len(data), n))
        return data
    rewrite_zip(src_path, dst_path, edit)


def pickle_zip(path, pkl, folder="archive", storages=None):
    """A torch-style zip holding a hand-written data.pkl and raw storages."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{folder}/data.pkl", pkl)
        z.writestr(f"{folder}/byteorder", b"little")
        for key, data in (storages or {}).items():
            z.writestr(f"{folder}/data/{key}", data)
        z.writestr(f"{folder}/version", b"3\n")


def tensor_pickle(numel_in_pid, size, sizes=None, strides=None):
    """Protocol-2 pickle of {'w': a FloatStorage tensor on storage '0'}: `size` contiguous elements, or
    the given `sizes` and `strides`."""
    def unicode(s):
        b = s.encode()
        return b"X" + struct.pack("<I", len(b)) + b

    def int_tuple(values):
        return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"
    sizes = [size] if sizes is None else sizes
    strides = [1] if strides is None else strides
    return (b"\x80\x02}(" + unicode("w") + b"ctorch._utils\n_rebuild_tensor_v2\n("
            + b"(" + unicode("storage") + b"ctorch\nFloatStorage\n" + unicode("0") + unicode("cpu")
            + b"J" + struct.pack("<i", numel_in_pid) + b"tQ"
            + b"K\x00" + int_tuple(sizes) + int_tuple(strides) + b"\x89"
            + b"ccollections\nOrderedDict\n)R" + b"tR" + b"u.")


def rounding_cases():
    """float32 -> float16 / bfloat16 as torch rounds them, as bit patterns (JSON has no inf)."""
    g = torch.Generator().manual_seed(99)
    scales = torch.tensor([1e-9, 1e-7, 1e-5, 1e-3, 1.0, 1e3, 6e4, 1e30])
    values = (torch.randn(8, 64, generator=g) * scales[:, None]).reshape(-1)
    edges = torch.tensor([0.0, -0.0, 65504.0, 65519.0, 65520.0, 1e5, 5.960464477539063e-08, 2.9802322387695312e-08,
                          2.98023259e-08, 6.097555160522461e-05, 6.1035156e-05, 1.0009765625, 1.00048828125,
                          1.00146484375, 3.0e38, 3.4028235e38, float("inf"), float("-inf"), 1.00390625, 1.01171875])
    values = torch.cat([values, edges]).to(torch.float32)

    def bits(t, dtype):
        return t.view(dtype).to(torch.int64).bitwise_and(0xFFFFFFFF if dtype == torch.int32 else 0xFFFF).tolist()
    return {"float32_bits": bits(values, torch.int32),
            "float16_bits": bits(values.to(torch.float16), torch.int16),
            "bfloat16_bits": bits(values.to(torch.bfloat16), torch.int16)}


def safetensors_bytes(header, data, header_len=None):
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h) if header_len is None else header_len) + h + data


def write_malformed(checkpoint_path):
    bad = os.path.join(OUT, "malformed")
    os.makedirs(bad, exist_ok=True)
    blob = open(checkpoint_path, "rb").read()
    open(os.path.join(bad, "truncated.pth"), "wb").write(blob[: len(blob) * 6 // 10])
    open(os.path.join(bad, "not_a_zip.pth"), "wb").write(b"\x80\x02}q\x00." + b"\x00" * 40)
    # GLOBAL 'os system' applied to ('echo pwned',): never unpickled here.
    pickle_zip(os.path.join(bad, "os_system.pth"),
               b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.")
    # A global that looks like torch but is not on the allowlist.
    pickle_zip(os.path.join(bad, "torch_load_global.pth"),
               b"\x80\x02ctorch.serialization\nload\nq\x00.")
    pickle_zip(os.path.join(bad, "unknown_opcode.pth"), b"\x80\x02}q\x00\xff.")
    # INST is a real pickle opcode (protocol 0 class instantiation) that the allowlist leaves out.
    pickle_zip(os.path.join(bad, "inst_opcode.pth"), b"\x80\x02(ios\nsystem\n.")
    pickle_zip(os.path.join(bad, "bad_memo.pth"), b"\x80\x02}q\x00h\x07.")
    pickle_zip(os.path.join(bad, "no_stop.pth"), b"\x80\x02}q\x00")
    # Storage '0' holds 4 floats; the tensor wants 10 of them (the persistent id agrees with the tensor).
    pickle_zip(os.path.join(bad, "short_storage.pth"), tensor_pickle(10, 10),
               storages={"0": struct.pack("<4f", 1, 2, 3, 4)})
    # The persistent id says 4 elements; the tensor's extent needs 10.
    pickle_zip(os.path.join(bad, "tensor_past_storage.pth"), tensor_pickle(4, 10),
               storages={"0": struct.pack("<4f", 1, 2, 3, 4)})
    pickle_zip(os.path.join(bad, "missing_storage.pth"), tensor_pickle(4, 4), storages={})
    # A stride-0 view of one float that claims 10^10 elements: valid for torch (it shares the storage),
    # refused by a reader that copies.
    pickle_zip(os.path.join(bad, "expand_bomb.pth"), tensor_pickle(1, 0, sizes=[100000, 100000], strides=[0, 0]),
               storages={"0": struct.pack("<f", 1)})
    with zipfile.ZipFile(os.path.join(bad, "no_data_pkl.pth"), "w") as z:
        z.writestr("archive/byteorder", b"little")

    f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    ok = {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
    cases = {
        "header_past_end.safetensors": safetensors_bytes(ok, f32, header_len=10_000),
        "wrong_shape.safetensors": safetensors_bytes(
            {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 24]}}, f32),
        "offsets_past_end.safetensors": safetensors_bytes(
            {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, f32[:16]),
        "overlapping.safetensors": safetensors_bytes(
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
             "b": {"dtype": "F32", "shape": [4], "data_offsets": [4, 20]}}, f32),
        "gap.safetensors": safetensors_bytes(
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
             "b": {"dtype": "F32", "shape": [3], "data_offsets": [12, 24]}}, f32),
        "unknown_dtype.safetensors": safetensors_bytes(
            {"a": {"dtype": "Q7", "shape": [6], "data_offsets": [0, 24]}}, f32),
        "bad_json.safetensors": struct.pack("<Q", 9) + b'{"a": [1,' + f32,
        "tiny.safetensors": b"\x05\x00\x00",
    }
    for name, data in cases.items():
        open(os.path.join(bad, name), "wb").write(data)


def padded_safetensors(tensors, header_length):
    """A safetensors file, as safetensors.torch.save_file lays it out without metadata, whose JSON header is
    padded with spaces (the reference writer pads the same way) to exactly `header_length` bytes."""
    header, offset, chunks = {}, 0, []
    names = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
    for name, t in tensors.items():
        raw = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= header_length, "header of %d bytes does not fit in %d" % (len(text), header_length)
    return struct.pack("<Q", header_length) + text + b" " * (header_length - len(text)) + b"".join(chunks)


def write_header_length_fixtures(expected):
    """Safetensors files whose header length's low byte is 0x80: the first bytes are `80 01` and `80 02`,
    the second exactly a protocol-2 pickle's opening. Keys and shapes follow torchvision's ResNet-50 (with
    small sizes), saved with no metadata, as the bug report's file was. Checked with the reference reader."""
    g = torch.Generator().manual_seed(80)
    tensors = collections.OrderedDict([
        ("conv1.weight", torch.randn(2, 3, 3, 3, generator=g)),
        ("bn1.running_var", torch.rand(2, generator=g) + 0.5),
        ("bn1.num_batches_tracked", torch.tensor(3)),
        ("fc.weight", torch.randn(3, 2, generator=g).to(torch.float16)),
        ("fc.bias", torch.randn(3, generator=g)),
    ])
    for header_length in (0x180, 0x280):
        name = "header_0x%x.safetensors" % header_length
        path = os.path.join(OUT, name)
        with open(path, "wb") as f:
            f.write(padded_safetensors(tensors, header_length))
        try:
            from safetensors.torch import load_file
            loaded = load_file(path)
            assert list(loaded) == list(tensors) or set(loaded) == set(tensors)
            assert all(torch.equal(loaded[k], v) for k, v in tensors.items()), name
        except ImportError:
            print("safetensors not installed:", name, "written but not checked with the reference reader")
        expected[name] = {"tensors": [[k, describe(v)] for k, v in tensors.items()]}


def update_header_length_fixtures():
    """Writes only the header-length fixtures, merging their entries into the existing expected.json."""
    path = os.path.join(OUT, "expected.json")
    with open(path) as f:
        expected = json.load(f)
    write_header_length_fixtures(expected)
    with open(path, "w") as f:
        json.dump(expected, f, indent=0)


def write_fixtures():
    os.makedirs(OUT, exist_ok=True)
    expected = {}

    small = small_state_dict()
    path = os.path.join(OUT, "small_state.pth")           # folder "small_state", not "archive"
    save_zip(small, path)
    loaded = torch.load(path, weights_only=True)
    expected["small_state.pth"] = {"tensors": [[k, describe(v)] for k, v in loaded.items()]}

    save_zip(collections.OrderedDict(list(small.items())[:4]), os.path.join(OUT, "archive_folder.pth"),
             folder="archive")
    save_zip(collections.OrderedDict(list(small.items())[:4]), os.path.join(OUT, "renamed_folder.pth"),
             folder="weights-v2.final")
    for name in ("archive_folder.pth", "renamed_folder.pth"):
        loaded = torch.load(os.path.join(OUT, name), weights_only=True)
        expected[name] = {"tensors": [[k, describe(v)] for k, v in loaded.items()]}

    # pickle_protocol=4 brings FRAME, SHORT_BINUNICODE, MEMOIZE and STACK_GLOBAL.
    torch.save(collections.OrderedDict(list(small.items())[:4]), os.path.join(OUT, "protocol4.pth"),
               pickle_protocol=4)
    expected["protocol4.pth"] = expected["renamed_folder.pth"]

    fusion = fusion_like_state_dict()
    checkpoint = {"state_dict": fusion, "meta_dim": 84, "max_boxes": 10, "lr": 0.001, "tag": "seed run",
                  "big": 2 ** 40, "neg": -5, "flag": True, "nothing": None, "history": [0.5, 0.25]}
    path = os.path.join(OUT, "checkpoint.pth")
    save_zip(checkpoint, path)
    loaded = torch.load(path, weights_only=True)
    expected["checkpoint.pth"] = {
        "tensors": [[k, describe(v)] for k, v in loaded["state_dict"].items()],
        "extras": {k: v for k, v in loaded.items() if k not in ("state_dict", "history")},
    }

    big_endian_copy(os.path.join(OUT, "renamed_folder.pth"), os.path.join(OUT, "big_endian.pth"))
    expected["big_endian.pth"] = expected["renamed_folder.pth"]

    try:
        from safetensors.torch import save_file
        tensors = collections.OrderedDict([
            ("weight", small["conv.weight"]), ("half", small["half"]), ("bf16", small["bf16"]),
            ("count", small["i64"]), ("scalar", small["num_batches_tracked"]), ("empty", small["empty"]),
        ])
        save_file(tensors, os.path.join(OUT, "reference.safetensors"),
                  metadata={"format": "pt", "note": "written by the safetensors package"})
        expected["reference.safetensors"] = {
            "tensors": [[k, describe(v)] for k, v in tensors.items()],
            "metadata": {"format": "pt", "note": "written by the safetensors package"},
        }
    except ImportError:
        print("safetensors not installed: reference.safetensors left as it is")

    write_header_length_fixtures(expected)
    expected["rounding"] = rounding_cases()
    write_malformed(os.path.join(OUT, "checkpoint.pth"))
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=0)
    print("torch", torch.__version__, "->", os.path.normpath(OUT))


def write_resnet50(path):
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    sd = model.state_dict()
    torch.save(sd, path)
    shapes = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sd.items()]
    probe = {k: [float(x) for x in v.reshape(-1)[:4].tolist()] for k, v in sd.items()
             if k in ("conv1.weight", "fc.weight", "layer4.2.bn3.running_var", "fc.bias")}
    with open(path + ".shapes.json", "w") as f:
        json.dump({"keys": shapes, "first_values": probe}, f)
    print(len(sd), "keys ->", path)
    try:
        # The bug report's file: the same weights through safetensors.torch.save_file, no metadata.
        from safetensors.torch import save_file
        save_file(sd, path + ".safetensors")
        with open(path + ".safetensors", "rb") as f:
            header_length = struct.unpack("<Q", f.read(8))[0]
        print("header length 0x%x ->" % header_length, path + ".safetensors")
    except ImportError:
        print("safetensors not installed: no", path + ".safetensors")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--resnet50", metavar="PATH", help="write a torchvision resnet50 of random weights")
    parser.add_argument("--header-length-only", action="store_true",
                        help="write only header_0x180/0x280.safetensors (merged into expected.json)")
    args = parser.parse_args()
    if args.resnet50:
        write_resnet50(args.resnet50)
    elif args.header_length_only:
        update_header_length_fixtures()
    else:
        write_fixtures()
