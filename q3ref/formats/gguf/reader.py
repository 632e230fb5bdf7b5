"""A GGUF file's metadata and tensor table, read as gguf-py's GGUFReader reads them: the same
values, the same tensor arrays (memory-mapped; quantized types as uint8 [rows, row bytes]).

gguf-py makes a NumPy view of every value it parses: a Qwen3 file's 151,669 tokens and 151,387
merges are 760,000 small arrays, and opening a 0.6B file took 6.6 s of `inspect`'s 7.3 s (AMD
EPYC). Here the header is parsed with struct from one memoryview, and only tensor data and numeric
arrays become NumPy arrays. The format (GGUF v2 and v3, little-endian):
    "GGUF", version u32, tensor count u64, key-value count u64;
    per key-value: key (string), value type u32, value;
    per tensor: name (string), n_dims u32, ne u64 x n_dims (ggml's order), ggml type u32, offset u64;
    tensor data from the next multiple of general.alignment (32 by default), each at its offset.
A string is a u64 length and UTF-8 bytes; an array, an element type u32, a count u64, the elements.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import numpy as np

MAGIC = b"GGUF"
STRING, ARRAY = 8, 9
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
DEFAULT_ALIGNMENT = 32
# Types whose data gguf-py hands out as values, not bytes
VALUE_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8, "I16": np.int16,
                "I32": np.int32, "I64": np.int64}


class Tensor(NamedTuple):  # the fields of gguf-py's ReaderTensor that q3ref reads
    name: str
    tensor_type: Any  # gguf.GGMLQuantizationType
    shape: np.ndarray  # ne: ggml's order, innermost first
    data: np.ndarray  # memory-mapped: values [ne reversed], or uint8 [ne reversed, last axis in bytes]


class Reader:
    """fields {key: value (int, float, bool, str, or a list)} and tensors [Tensor], in file order."""

    def __init__(self, path):
        import gguf

        self.data = np.memmap(path, mode="r")
        self._buf = memoryview(self.data)
        if bytes(self._buf[:4]) != MAGIC:
            raise ValueError("GGUF magic invalid")
        version, n_tensors, n_kv = self._unpack("<IQQ", 4)
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} (q3ref reads 2 and 3)")
        offs = 24
        self.fields: dict[str, Any] = {"GGUF.version": version, "GGUF.tensor_count": n_tensors, "GGUF.kv_count": n_kv}
        for _ in range(n_kv):
            key, offs = self._string(offs)
            (kind,), offs = self._unpack("<I", offs), offs + 4
            self.fields[key], offs = self._value(kind, offs)
        infos = []
        for _ in range(n_tensors):
            name, offs = self._string(offs)
            (n_dims,), offs = self._unpack("<I", offs), offs + 4
            ne = np.array(self._unpack(f"<{n_dims}Q", offs), np.uint64)
            offs += 8 * n_dims
            kind, at = self._unpack("<IQ", offs)
            offs += 12
            infos.append((name, ne, gguf.GGMLQuantizationType(kind), at))
        alignment = int(self.fields.get("general.alignment", DEFAULT_ALIGNMENT))
        start = -(-offs // alignment) * alignment
        self.tensors, seen = [], set()
        for name, ne, kind, at in infos:
            if name in seen:
                raise ValueError(f"Found duplicated tensor with name {name}")
            seen.add(name)
            self.tensors.append(Tensor(name, kind, ne, self._tensor_data(ne, kind, start + at)))

    def _unpack(self, fmt, offs):
        try:
            return struct.unpack_from(fmt, self._buf, offs)
        except struct.error:
            raise ValueError(f"the header runs past the end of the file at byte {offs} (truncated?)") from None

    def _string(self, offs):  # -> (str, offset after it)
        (n,) = self._unpack("<Q", offs)
        end = offs + 8 + n
        if end > len(self._buf):
            raise ValueError("a string runs past the end of the file")
        return str(self._buf[offs + 8:end], "utf-8"), end

    def _value(self, kind, offs):  # -> (value, offset after it)
        if kind == STRING:
            return self._string(offs)
        if kind in SCALARS:
            fmt = SCALARS[kind]
            return self._unpack(fmt, offs)[0], offs + struct.calcsize(fmt)
        if kind != ARRAY:
            raise ValueError(f"unknown GGUF value type {kind}")
        item, count = self._unpack("<IQ", offs)
        offs += 12
        if item == STRING:
            out = []
            for _ in range(count):
                s, offs = self._string(offs)
                out.append(s)
            return out, offs
        if item not in SCALARS:
            raise ValueError(f"unknown GGUF array element type {item}")
        dtype = np.dtype(SCALARS[item])
        values = np.frombuffer(self._buf, dtype, count, offs)  # (raises past the end of the file)
        return values.tolist(), offs + dtype.itemsize * count

    def _tensor_data(self, ne, kind, offs):  # memory-mapped, shaped as gguf-py shapes it
        import gguf

        dims = tuple(int(n) for n in reversed(ne.tolist()))
        count = int(np.prod(dims))
        dtype = VALUE_DTYPES.get(kind.name)
        if dtype is None:  # quantized: bytes, the last axis in blocks' bytes
            block, size = gguf.GGML_QUANT_SIZES[kind]
            dims = dims[:-1] + (dims[-1] // block * size,)
            dtype, count = np.uint8, count // block * size
        n_bytes = count * np.dtype(dtype).itemsize
        if offs + n_bytes > len(self.data):
            raise ValueError("a tensor runs past the end of the file")
        return self.data[offs:offs + n_bytes].view(dtype).reshape(dims)
