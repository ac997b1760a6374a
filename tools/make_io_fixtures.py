#!/usr/bin/env python3
"""Writes the reference checkpoint files that tests/test_io.c reads.

  python3 tools/make_io_fixtures.py [OUTDIR]     (default: tests/data/io)

.npy files come from numpy itself. reference.safetensors comes from the
reference implementation (`pip install safetensors`, with torch for BF16)
when it is importable; otherwise the same bytes are laid out here with
struct/json, following its rules (dtype order, compact JSON, space padding
to 8 bytes). Every value is exactly representable in F16 and BF16:
v(i) = (i - 5) / 4 for the i-th element of each float tensor.
"""
import json
import os
import struct
import sys

import numpy as np

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "io")
os.makedirs(out, exist_ok=True)


def values(n):
    return (np.arange(n, dtype=np.float64) - 5) / 4


# name -> (dtype, shape, flat values); test_io.c checks the same table.
TENSORS = {
    "blocks.0.attn.qkv.weight": ("F32", (3, 4), values(12)),
    "blocks.0.attn.qkv.cross_modal_scale": ("F32", (1,), np.array([0.5])),
    "blocks.0.mlp.fc1.weight": ("F16", (2, 3), values(6)),
    "blocks.0.mlp.fc1.bias": ("BF16", (5,), values(5)),
    "embeddings.position_ids": ("I64", (1, 4), np.arange(4)),
}
METADATA = {"format": "pt"}  # one key: the reference orders several at random

NP = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def raw_bytes(dtype, vals):
    if dtype == "BF16":  # the top half of each f32 (exact for these values)
        return (np.asarray(vals, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
    return np.asarray(vals, NP[dtype]).astype(np.dtype(NP[dtype]).newbyteorder("<")).tobytes()


def save_by_hand(path):
    rank = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
            "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]
    order = sorted(TENSORS, key=lambda n: (-rank.index(TENSORS[n][0]), n))
    header, data = {"__metadata__": METADATA}, b""
    for name in order:
        dtype, shape, vals = TENSORS[name]
        blob = raw_bytes(dtype, vals)
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def save_reference(path):
    import torch
    from safetensors.torch import save_file
    torch_dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                   "I64": torch.int64}
    tensors = {name: torch.tensor(vals.tolist(), dtype=torch_dtype[d]).reshape(shape)
               for name, (d, shape, vals) in TENSORS.items()}
    save_file(tensors, path, metadata=METADATA)


st_path = os.path.join(out, "reference.safetensors")
try:
    save_reference(st_path)
    print("reference.safetensors: written by the safetensors package")
except ImportError:
    save_by_hand(st_path)
    print("reference.safetensors: written by hand (safetensors or torch not importable)")

# .npy f32: format 1.0 as np.save writes it, 2.0 forced, and three valid
# files of kinds m2pt rejects.
a = (np.arange(24, dtype=np.float32) * 0.5).reshape(2, 3, 4)
np.save(os.path.join(out, "reference_v1.npy"), a)
with open(os.path.join(out, "reference_v2.npy"), "wb") as f:
    np.lib.format.write_array(f, np.arange(6, dtype=np.float32) * -1.5, version=(2, 0))
np.save(os.path.join(out, "fortran.npy"), np.asfortranarray(a[0]))
np.save(os.path.join(out, "float64.npy"), a[0].astype(np.float64))
np.save(os.path.join(out, "bigendian.npy"), a[0].astype(">f4"))

# Integer .npy (token ids, masks): the extremes of each type, so that reading
# them shows the widening is exact; a version 2.0 file; a big-endian one,
# which m2pt refuses.
ids = np.array([[0, 1, -1, 2**31 - 1, -2**31], [2**40, -2**40, 2**63 - 1, -2**63, 101]],
               dtype="<i8")
np.save(os.path.join(out, "ids_i8.npy"), ids)
with open(os.path.join(out, "ids_i4_v2.npy"), "wb") as f:
    np.lib.format.write_array(f, ids[0].astype("<i4"), version=(2, 0))
np.save(os.path.join(out, "mask_i1.npy"), np.array([[1, 0, -128], [127, -1, 0]], dtype="|i1"))
np.save(os.path.join(out, "mask_u1.npy"), np.array([0, 1, 255], dtype="|u1"))
np.save(os.path.join(out, "mask_b1.npy"), np.array([[True, False], [False, True]]))
np.save(os.path.join(out, "bigendian_i8.npy"), ids.astype(">i8"))
print("npy fixtures written to", os.path.normpath(out))
