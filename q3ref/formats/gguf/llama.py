"""Run a GGUF in llama.cpp (through llama-cpp-python, an optional extra) and copy out every node
of its compute graph: llama.cpp's own numbers, the "graph" side of `diff`.

One thread and flash attention off, so the numbers are reproducible and each attention product is
a node. The scheduler's eval callback (cb_eval) is asked about every node; saying yes makes it stop
after that node and hand it over, computed. Nodes are keyed "{index}:{name}:{op}" plus, for a
MUL_MAT, the weight it reads ("...:blk.0.attn_q.weight"): several nodes share one name (Qcur-0 is
the q projection, its reshape and its RoPE), so names alone do not say which is which.
"""

from __future__ import annotations

import ctypes

import numpy as np

from ...errors import Q3RefError
from .file import POOLING_RANK

GGML_MAX_DIMS, GGML_MAX_SRC = 4, 10
F32, F16 = 0, 1  # ggml_type
POOLING_UNSPECIFIED, FLASH_ATTN_AUTO, FLASH_ATTN_DISABLED = -1, -1, 0
SAME_DATA = {"VIEW", "RESHAPE", "PERMUTE", "TRANSPOSE", "SET_ROWS"}  # another node's values, moved or copied


class GGMLTensor(ctypes.Structure):  # struct ggml_tensor, ggml/include/ggml.h
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p),
                ("ne", ctypes.c_int64 * GGML_MAX_DIMS), ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
                ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16), ("flags", ctypes.c_int32),
                ("src", ctypes.c_void_p * GGML_MAX_SRC), ("view_src", ctypes.c_void_p),
                ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64),
                ("extra", ctypes.c_void_p), ("padding", ctypes.c_char * 8)]


def read_tensor(t: GGMLTensor) -> np.ndarray:
    """The tensor's values as float32 with numpy's axis order (ne reversed), following its byte
    strides (views and permutes are not contiguous)."""
    dtype = np.dtype({F32: np.float32, F16: np.float16}[t.type])
    shape, strides = list(t.ne)[::-1], list(t.nb)[::-1]
    span = sum((n - 1) * s for n, s in zip(shape, strides)) + dtype.itemsize
    raw = (ctypes.c_char * span).from_address(t.data)
    return np.ndarray(shape, dtype, buffer=raw, strides=strides).astype(np.float32)


def op_desc():
    """ggml_op_desc(tensor) -> b"MUL_MAT", from the ggml library llama-cpp-python loaded."""
    from pathlib import Path

    import llama_cpp

    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    lib.ggml_op_desc.restype, lib.ggml_op_desc.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
    return lib.ggml_op_desc


_LOG = []  # the C callback must outlive the call that installs it


def quiet():
    """llama.cpp logs every load to stderr; q3ref's report is the output."""
    import llama_cpp

    if not _LOG:
        _LOG.append(llama_cpp.llama_log_callback(lambda level, text, data: None))
        llama_cpp.llama_log_set(_LOG[0], ctypes.c_void_p())


def system_info() -> str:
    """The build's feature line (llama_print_system_info): the kernels ggml-cpu compiled in."""
    import llama_cpp

    return llama_cpp.llama_print_system_info().decode().strip()


def run_llama(path, ids, capture=True, threads=1, pooling=POOLING_UNSPECIFIED, flash_attn=FLASH_ATTN_DISABLED):
    """ids [T] -> ({node key: [..] float32}, pooled [D], or [classes] under rank pooling). pooling:
    the file's own unless given. capture=False: no eval callback at all; threads=None: llama.cpp's
    default count; flash_attn=FLASH_ATTN_AUTO: llama.cpp's default (on, on a CPU)."""
    try:
        import llama_cpp
    except ImportError:
        raise Q3RefError("running a GGUF needs llama-cpp-python (pip install 'q3ref[llama]'; "
                         "it builds llama.cpp, a few minutes)") from None
    describe_op = op_desc()
    nodes, order = {}, [0]

    def callback(ptr, ask, _):
        t = ctypes.cast(ptr, ctypes.POINTER(GGMLTensor)).contents
        if ask:
            return capture
        if t.type in (F32, F16) and t.data and describe_op(ptr).decode() not in SAME_DATA:
            name, op = t.name.decode(), describe_op(ptr).decode()
            key = f"{order[0]}:{name}:{op}"
            if op == "MUL_MAT" and t.src[0]:
                key += ":" + ctypes.cast(t.src[0], ctypes.POINTER(GGMLTensor)).contents.name.decode()
            nodes[key] = read_tensor(t)
        order[0] += 1
        return True

    cb = llama_cpp.ggml_backend_sched_eval_callback(callback)
    quiet()
    llama_cpp.llama_backend_init()
    mparams = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), mparams)
    if not model:
        raise Q3RefError(f"{path}: llama.cpp could not load it")
    n = len(ids)
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = max(n, 8)
    if threads is not None:
        cparams.n_threads = cparams.n_threads_batch = threads
    cparams.embeddings = True
    cparams.pooling_type = pooling
    cparams.flash_attn_type = flash_attn
    if capture:
        cparams.cb_eval = cb
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    batch = llama_cpp.llama_batch_init(n, 0, 1)
    try:
        batch.n_tokens = n
        for i, tok in enumerate(ids):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = int(tok), i, 1
            batch.seq_id[i][0], batch.logits[i] = 0, 1
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise Q3RefError(f"{path}: llama_decode failed")
        # rank pooling hands back one value per class (a Qwen3 reranker's: P(yes), P(no)), else the [D] row
        n_out = (llama_cpp.llama_model_n_cls_out(model) if llama_cpp.llama_pooling_type(ctx) == POOLING_RANK
                 else llama_cpp.llama_model_n_embd(model))
        ptr = llama_cpp.llama_get_embeddings_seq(ctx, 0)
        pooled = np.ctypeslib.as_array(ptr, shape=(n_out,)).astype(np.float32).copy()
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
    return nodes, pooled
