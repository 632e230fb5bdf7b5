"""Read and write .safetensors files with NumPy only, memory-mapped.

The safetensors library cannot hand bf16 to NumPy (NumPy has no bf16), so q3ref reads the
format itself: 8-byte little-endian header length, a JSON header
{name: {"dtype", "shape", "data_offsets": [begin, end]}}, then the raw little-endian data.
bf16 tensors come back as raw uint16 bit patterns; `upcast` widens them exactly.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import numba
import numpy as np

from .errors import Q3RefError

# safetensors dtype -> NumPy storage dtype (bf16 is kept as its uint16 bit pattern)
STORAGE = {"BF16": np.dtype("<u2"), "F16": np.dtype("<f2"), "F32": np.dtype("<f4"),
           "F64": np.dtype("<f8")}
FLOAT_DTYPES = tuple(STORAGE)


def read_header(path: Path) -> tuple[dict, int]:
    """Return (header without __metadata__, byte offset where the data starts)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise Q3RefError(f"{path}: not a safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", head)
            size = path.stat().st_size
            if n > size - 8 or n > 100_000_000:
                raise Q3RefError(f"{path}: not a safetensors file (header length {n} "
                                 f"does not fit a file of {size} bytes)")
            header = json.loads(f.read(n))
    except OSError as e:
        raise Q3RefError(f"{path}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Q3RefError(f"{path}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise Q3RefError(f"{path}: corrupt safetensors header")
    header.pop("__metadata__", None)
    return header, 8 + n


def open_tensors(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """Map every tensor of a file: name -> (safetensors dtype, memory-mapped storage array)."""
    path = Path(path)
    header, start = read_header(path)
    size = path.stat().st_size
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise Q3RefError(f"{path}: corrupt header entry for tensor {name!r}") from None
        if dtype not in STORAGE:
            out[name] = (dtype, None)  # reported by the checker only if the model needs it
            continue
        nbytes = int(np.prod(shape, dtype=np.int64)) * STORAGE[dtype].itemsize
        if end - begin != nbytes or start + end > size or begin < 0:
            raise Q3RefError(f"{path}: tensor {name!r} ({dtype} {list(shape)}) has "
                             f"{end - begin} bytes of data where {nbytes} are needed, "
                             "or runs past the end of the file (truncated download?)")
        out[name] = (dtype, mm[start + begin:start + end].view(STORAGE[dtype]).reshape(shape))
    return out


def widen_bf16(raw: np.ndarray) -> np.ndarray:
    """bf16 bit patterns [...] -> fp32 [...]. bf16 is the top half of an fp32: shifting left by 16
    is exact."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


@numba.njit(cache=True, nogil=True)
def widen_bf16_numba_into(raw, out):
    """widen_bf16 in one pass, raw [n] uint16 -> out [n] uint32. The NumPy twin makes two fresh
    arrays per tensor; at 0.6B that was 2.8 s of a 128-token diff's 15 s, this is ~0.4 s. nogil:
    the weights can upcast while another thread waits on a runtime (diff.py)."""
    for i in range(raw.size):
        out[i] = np.uint32(raw[i]) << 16


def widen_bf16_numba(raw: np.ndarray) -> np.ndarray:
    out = np.empty(raw.shape, np.uint32)
    widen_bf16_numba_into(np.ascontiguousarray(raw).reshape(-1), out.reshape(-1))
    return out.view(np.float32)


def upcast(dtype: str, raw: np.ndarray, to=np.float32) -> np.ndarray:
    """Storage -> float array."""
    if dtype == "BF16":
        wide = widen_bf16_numba(raw)
        return wide if to == np.float32 else wide.astype(to)
    return np.asarray(raw, dtype=to)


def release_pages(raw: np.ndarray):
    """Drop the file pages a memory-mapped tensor brought into this process.

    Pages read through a mapping count in the process's RSS until unmapped; after a tensor is
    upcast they are dead weight (the OS page cache still holds them, so a re-read is cheap).
    """
    m = getattr(raw, "_mmap", None)
    if isinstance(m, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        m.madvise(mmap.MADV_DONTNEED)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """fp32 -> bf16 bit pattern, rounding to nearest even (as torch's .to(bfloat16) does)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    return ((bits + rounding) >> 16).astype(np.uint16)


def write(path: Path, tensors: dict, metadata=None):
    """Write name -> (safetensors dtype, shape, make) to `path`, one tensor at a time.

    `make()` returns the storage array, or an iterator of row chunks of it; it is called only
    when that tensor is written, so a checkpoint larger than memory can be produced. Goes to a temporary name first, so a
    failure never leaves a half-written checkpoint.
    """
    path = Path(path)
    header, offset = {}, 0
    for name, (dtype, shape, _) in tensors.items():
        n = int(np.prod(shape, dtype=np.int64)) * STORAGE[dtype].itemsize
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # data aligned to 8 bytes, as the reference writer does
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, (dtype, shape, make) in tensors.items():
            made = make()
            rows = 0
            for chunk in ([made] if isinstance(made, np.ndarray) else made):
                chunk = np.ascontiguousarray(chunk, dtype=STORAGE[dtype])
                if chunk.shape[1:] != tuple(shape[1:]):
                    raise ValueError(f"{name}: made rows of {chunk.shape[1:]}, declared {tuple(shape)}")
                chunk.tofile(f)
                rows += chunk.shape[0] if chunk.ndim else 1
            if rows != (shape[0] if len(shape) else 1):
                raise ValueError(f"{name}: made {rows} rows, declared {tuple(shape)}")
    tmp.replace(path)
