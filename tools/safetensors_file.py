"""The safetensors layout, python3 standard library only: an 8-byte
little-endian header length, a compact JSON header ("__metadata__" first,
padded with spaces to a multiple of 8 bytes), then the raw tensor data.
Shared by the golden generators in tools/ and the checkers in tests/.
"""
import json
import struct

ELEMENT_BYTES = {'F64': 8, 'F32': 4, 'F16': 2, 'BF16': 2, 'I64': 8, 'I32': 4, 'I16': 2, 'I8': 1,
                 'U8': 1, 'BOOL': 1}


def write(path, entries, metadata=None):
    """entries: (name, dtype, shape, raw little-endian bytes) in file order;
    metadata: a dict of strings (omitted when empty)."""
    header = {'__metadata__': metadata} if metadata else {}
    blobs, off = [], 0
    for name, dtype, shape, blob in entries:
        header[name] = {'dtype': dtype, 'shape': list(shape),
                        'data_offsets': [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + b''.join(blobs))


def read(path):
    """(metadata, {name: (dtype, shape, raw bytes)}); ValueError naming the
    tensor when the file is not laid out as above."""
    with open(path, 'rb') as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f'{path}: {len(raw)} bytes, no safetensors header')
    n = struct.unpack('<Q', raw[:8])[0]
    if 8 + n > len(raw):
        raise ValueError(f'{path}: header of {n} bytes past the end of the file')
    header = json.loads(raw[8:8 + n].decode('utf-8'))
    meta = header.pop('__metadata__', None) or {}
    data, tensors = raw[8 + n:], {}
    for name, info in header.items():
        dtype, shape = info['dtype'], info['shape']
        begin, end = info['data_offsets']
        numel = 1
        for d in shape:
            numel *= d
        if dtype not in ELEMENT_BYTES:
            raise ValueError(f'{path}: "{name}" has unknown dtype {dtype}')
        if not 0 <= begin <= end <= len(data) or end - begin != numel * ELEMENT_BYTES[dtype]:
            raise ValueError(f'{path}: "{name}": data_offsets {begin}..{end} do not hold '
                             f'{numel} {dtype} values')
        tensors[name] = (dtype, shape, data[begin:end])
    return meta, tensors
