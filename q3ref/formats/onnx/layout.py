"""Where each initializer's bytes sit inside an .onnx file, read from protobuf's wire format
without decoding the tensors: ModelProto.graph (field 7) -> GraphProto.initializer (field 5) ->
TensorProto.name (field 8) and TensorProto.raw_data (field 9).

A tapped copy of a graph (run.py) then points ONNX Runtime at those bytes as external data
instead of carrying them: a 900 MB q4 graph's copy took 1.6 s to serialize and ORT 5 s to parse
back, where the graph itself loads in 2.3 s.
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


def fields(buf, start, end):
    """(field number, wire type, value) for each field in buf[start:end]; a length-delimited
    field's value is (offset, length), others' the varint or None."""
    i = start
    while i < end:
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, i = varint(buf, i)
            yield number, wire, value
        elif wire == LENGTH:
            n, i = varint(buf, i)
            yield number, wire, (i, n)
            i += n
        elif wire in (FIXED64, FIXED32):
            yield number, wire, None
            i += 8 if wire == FIXED64 else 4
        else:
            raise ValueError(f"protobuf wire type {wire} at byte {i}")
    if i != end:
        raise ValueError(f"a field runs past byte {end}")


def raw_data_spans(path) -> dict[str, tuple[int, int]]:
    """{initializer name: (byte offset, length) of its raw_data in the file} for the initializers
    stored inline as raw bytes (those kept in an .onnx_data file, or as typed lists, are not here)."""
    spans = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        for number, wire, graph in fields(buf, 0, len(buf)):
            if number != 7 or wire != LENGTH:
                continue
            for number, wire, tensor in fields(buf, graph[0], graph[0] + graph[1]):
                if number != 5 or wire != LENGTH:
                    continue
                name = raw = None
                for number, wire, value in fields(buf, tensor[0], tensor[0] + tensor[1]):
                    if number == 8 and wire == LENGTH:
                        name = bytes(buf[value[0]:value[0] + value[1]]).decode()
                    elif number == 9 and wire == LENGTH:
                        raw = value
                if name is not None and raw is not None:
                    spans[name] = raw
    return spans
