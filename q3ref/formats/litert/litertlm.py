"""The .litertlm container (LiteRT-LM bundles, e.g. the Qwen3.5-0.8B release), read without its
builder: magic `LITERTLM`, version, the header's end at byte 24, a flatbuffer header from byte 32
(LiteRTLMMetaData: system metadata entries and a table of sections), then the sections, each
aligned to 16 KiB. A section is a TFLite model, TFLite weights, a SentencePiece model, a
HuggingFace tokenizer.json as an 8-byte size plus its zlib stream, or a metadata proto.

The schema is litert-lm-builder's litertlm_header.fbs; this file reads the few tables it needs
through the flatbuffer wire format (tables, vtables, vectors, strings, unions), so q3ref does not
depend on the builder. tests/test_litertlm.py holds it to files written by the builder itself.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import Q3RefError

MAGIC = b"LITERTLM"
HEADER_BEGIN = 32
SECTION_TYPES = {0: "NONE", 1: "GenericBinaryData", 2: "Deprecated", 3: "TFLiteModel", 4: "SP_Tokenizer",
                 5: "LlmMetadataProto", 6: "HF_Tokenizer_Zlib", 7: "TFLiteWeights", 8: "EmbeddingMetadataProto",
                 9: "ExecutorMetadataProto", 10: "TtsMetadataProto", 11: "AsrMetadataProto"}
# VData union member -> struct format of its single `value` field (9: StringValue, a string).
SCALARS = {1: "<B", 2: "<b", 3: "<H", 4: "<h", 5: "<I", 6: "<i", 7: "<f", 8: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class _Table:
    """One flatbuffer table: fields by index through its vtable (absent fields read as None)."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vt_size = struct.unpack_from("<H", buf, self.vtable)[0]

    def _field(self, i):
        slot = 4 + 2 * i
        if slot >= self.vt_size:
            return None
        off = struct.unpack_from("<H", self.buf, self.vtable + slot)[0]
        return self.pos + off if off else None

    def scalar(self, i, fmt, default=0):
        at = self._field(i)
        return default if at is None else struct.unpack_from(fmt, self.buf, at)[0]

    def _deref(self, at):
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, i):
        at = self._field(i)
        return None if at is None else _Table(self.buf, self._deref(at))

    def string(self, i):
        at = self._field(i)
        if at is None:
            return None
        s = self._deref(at)
        n = struct.unpack_from("<I", self.buf, s)[0]
        return self.buf[s + 4:s + 4 + n].decode("utf-8", "replace")

    def tables(self, i):  # a vector of tables
        at = self._field(i)
        if at is None:
            return []
        v = self._deref(at)
        n = struct.unpack_from("<I", self.buf, v)[0]
        return [_Table(self.buf, self._deref(v + 4 + 4 * j)) for j in range(n)]


def _items(t: _Table) -> dict:
    """KeyValuePair tables {key, value_type, value: VData} -> {key: value}."""
    out = {}
    for kv in t:
        kind, value = kv.scalar(1, "<B"), kv.table(2)
        if value is None:
            out[kv.string(0)] = None
        elif kind == 9:
            out[kv.string(0)] = value.string(0)
        else:
            out[kv.string(0)] = value.scalar(0, SCALARS.get(kind, "<B"))
    return out


@dataclass
class Section:
    index: int
    kind: str  # SECTION_TYPES' name
    begin: int  # byte offsets in the file
    end: int
    items: dict = field(default_factory=dict)  # the section's key/value metadata (e.g. model_type)

    @property
    def size(self) -> int:
        return self.end - self.begin


@dataclass
class LiteRTLM:
    path: Path
    version: tuple
    system: dict
    sections: list

    def data(self, section: Section) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(section.begin)
            return f.read(section.size)

    def tflite_models(self) -> list:
        return [s for s in self.sections if s.kind == "TFLiteModel"]

    def tokenizer_json(self) -> bytes | None:
        """The HuggingFace tokenizer.json: its section is an 8-byte little-endian size, then zlib."""
        for s in self.sections:
            if s.kind == "HF_Tokenizer_Zlib":
                raw = self.data(s)
                size = struct.unpack_from("<Q", raw)[0]
                try:
                    text = zlib.decompress(raw[8:])
                except zlib.error as e:
                    raise Q3RefError(f"{self.path}: the tokenizer section does not inflate ({e})") from None
                if len(text) != size:
                    raise Q3RefError(f"{self.path}: the tokenizer inflates to {len(text)} bytes, its size says {size}")
                return text
        return None


def is_litertlm(head: bytes) -> bool:
    return head[:8] == MAGIC


def read(path) -> LiteRTLM:
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HEADER_BEGIN)
        if len(head) < HEADER_BEGIN or not is_litertlm(head):
            raise Q3RefError(f"{path}: not a .litertlm file (no LITERTLM magic)")
        version = struct.unpack_from("<III", head, 8)
        end = struct.unpack_from("<Q", head, 24)[0]
        if not HEADER_BEGIN < end <= size:
            raise Q3RefError(f"{path}: header ends at byte {end}, outside the file ({size} bytes); truncated?")
        buf = f.read(end - HEADER_BEGIN)
    try:
        root = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
        system = _items(root.table(0).tables(0)) if root.table(0) else {}
        sections = []
        for i, s in enumerate(root.table(1).tables(0) if root.table(1) else []):
            sec = Section(i, SECTION_TYPES.get(s.scalar(3, "<B"), f"type {s.scalar(3, '<B')}"),
                          s.scalar(1, "<Q"), s.scalar(2, "<Q"), _items(s.tables(0)))
            if not end <= sec.begin <= sec.end <= size:
                raise Q3RefError(f"{path}: section {i} ({sec.kind}) spans bytes {sec.begin}-{sec.end}, "
                                 f"outside the file ({size} bytes); truncated?")
            sections.append(sec)
    except (struct.error, IndexError):
        raise Q3RefError(f"{path}: the .litertlm header does not parse") from None
    return LiteRTLM(path, version, system, sections)
