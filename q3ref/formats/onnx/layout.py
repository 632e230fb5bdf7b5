"""An .onnx file without its weights' bytes, and where those bytes sit in it, from protobuf's
wire format: ModelProto.graph (field 7) -> GraphProto.initializer (field 5) -> TensorProto.name
(field 8) and TensorProto.raw_data (field 9).

graph.py parses the rest (the nodes, each initializer's name, type and dims) and reads a weight's
bytes from the file when asked: a 900 MB q4 graph took 1 s to load whole and held 900 MB.
A tapped copy of a graph (run.py) points ONNX Runtime at those bytes as external data instead of
carrying them: serializing the whole copy took 1.6 s and ORT 5 s to parse it back.
"""

from __future__ import annotations

import mmap

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5  # protobuf wire types (3 and 4, groups, are not in onnx.proto)


def varint(buf, i):  # -> (value, index after it)
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def encode_varint(value) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out) + bytes([value])


def fields(buf, start, end):
    """(field number, wire type, value, first byte, end byte) for each field in buf[start:end]; a
    length-delimited field's value is (offset, length) of its payload, others' the varint or None."""
    i = start
    while i < end:
        first = i
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, i = varint(buf, i)
        elif wire == LENGTH:
            n, i = varint(buf, i)
            value, i = (i, n), i + n
        elif wire in (FIXED64, FIXED32):
            value, i = None, i + (8 if wire == FIXED64 else 4)
        else:
            raise ValueError(f"protobuf wire type {wire} at byte {first}")
        if i > end:
            raise ValueError(f"a field at byte {first} runs past byte {end}")
        yield number, wire, value, first, i


def length_field(number, payload) -> bytes:
    return encode_varint(number << 3 | LENGTH) + encode_varint(len(payload)) + payload


def without_raw_data(path) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """(the ModelProto's bytes with every initializer's raw_data left out, {initializer name:
    (byte offset, length) of its raw_data in the file}). Initializers kept in an .onnx_data file
    or as typed lists are untouched and not in the dict."""
    spans = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        model = bytearray()
        for number, wire, graph, first, end in fields(buf, 0, len(buf)):
            if number != 7 or wire != LENGTH:
                model += buf[first:end]
                continue
            kept = bytearray()
            for number, wire, tensor, first, end in fields(buf, graph[0], graph[0] + graph[1]):
                if number != 5 or wire != LENGTH:
                    kept += buf[first:end]
                    continue
                name, raw, rest = None, None, bytearray()
                for number, wire, value, first, end in fields(buf, tensor[0], tensor[0] + tensor[1]):
                    if number == 9 and wire == LENGTH:
                        raw = value
                        continue
                    if number == 8 and wire == LENGTH:
                        name = bytes(buf[value[0]:value[0] + value[1]]).decode()
                    rest += buf[first:end]
                if name is not None and raw is not None:
                    spans[name] = raw
                kept += length_field(5, bytes(rest))
            model += length_field(7, bytes(kept))
    return bytes(model), spans


def read_span(path, span) -> bytes:
    offset, length = span
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)
