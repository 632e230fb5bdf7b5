"""GGUF files with one metadata field changed, written with gguf-py (llama.cpp's own writer):
the metadata defects of tests/test_gguf.py, and scripts/export_gguf.py's rope-base defect."""

from pathlib import Path


def rewrite_metadata(src, out, change):
    """A copy of `src` with the fields in `change` ({key: (value, GGUFValueType)}) replaced, added,
    or removed (value None); tensors copied byte for byte."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    arch = change.get("general.architecture", (reader.get_field("general.architecture").contents(),))[0]
    writer = gguf.GGUFWriter(str(out), arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture" or field.name in change:
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    for key, (value, vtype) in change.items():
        if value is not None and key != "general.architecture":
            writer.add_key_value(key, value, vtype)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data)
    writer.close()
    return Path(out)
