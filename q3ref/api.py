"""The Python API, shaped like sentence-transformers: load() -> Model.encode / similarity /
tokenize / trace."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

from . import model as M
from .checkpoint import RANDOM_MARK
from .config import Config, read_config
from .errors import Q3RefError
from .quant import SIMULATIONS, simulation
from .qwen35.config import is_qwen35
from .tokenizer import EOS_ID, Tokenizer, find_tokenizer_file, load_hf
from .weights import Weights

REPO_ROOT = Path(__file__).resolve().parent.parent
DOWNLOAD_HINT = (
    "no Qwen3-Embedding weights found. Get the real ones with "
    "`huggingface-cli download Qwen/Qwen3-Embedding-0.6B --local-dir weights/Qwen3-Embedding-0.6B` "
    "(or pass --weights DIR / set Q3REF_WEIGHTS), or run offline on the bundled random test "
    "checkpoint with --weights weights/q3ref-tiny")


def find_weights(path=None) -> Path:
    """--weights, $Q3REF_WEIGHTS, weights/Qwen3-Embedding-0.6B, then the Hugging Face cache."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_dir() and not (p.is_file() and p.suffix == ".gguf"):
            raise Q3RefError(f"weights directory {p} does not exist" if not p.exists() else
                             f"--weights takes a checkpoint directory or a .gguf file, not {p}")
        return p
    if os.environ.get("Q3REF_WEIGHTS"):
        p = Path(os.environ["Q3REF_WEIGHTS"]).expanduser()
        if not p.is_dir():
            raise Q3RefError(f"Q3REF_WEIGHTS={p} is not a directory")
        return p
    for base in (Path.cwd(), REPO_ROOT):
        p = base / "weights" / "Qwen3-Embedding-0.6B"
        if (p / "config.json").is_file():
            return p
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
    snaps = sorted(glob.glob(os.path.join(hub, "models--Qwen--Qwen3-Embedding-0.6B", "snapshots", "*", "config.json")))
    if snaps:
        return Path(snaps[-1]).parent
    raise Q3RefError(DOWNLOAD_HINT)


class Model:
    def __init__(self, path, dtype="float32", kernels="numba", resident=True, quant="none", runtime="xnnpack",
                 flash_attn=True):
        self.path = Path(path)
        if dtype not in ("float32", "float64"):
            raise Q3RefError(f"dtype must be float32 or float64, got {dtype!r}")
        if kernels not in M.KERNELS:
            raise Q3RefError(f"kernels must be one of {', '.join(M.KERNELS)}, got {kernels!r}")
        if self.path.is_file():  # a GGUF: its tensors dequantized, its metadata as the config
            from .formats.gguf.weights import GGUFWeights

            self.weights = GGUFWeights(self.path, np.dtype(dtype), resident)
            self.cfg = self.weights.cfg
        elif not (self.path / "config.json").is_file():
            raise Q3RefError(f"{self.path} is not a checkpoint directory (no config.json)")
        elif is_qwen35(self.path / "config.json"):
            raise Q3RefError(f"{self.path} is a Qwen3.5 checkpoint: q3ref reads it with `trace --ids` and "
                             "`diff` of its LiteRT export; embed, rerank, bench and the rest take Qwen3")
        else:
            self.cfg = Config.from_json(self.path / "config.json")
            self.weights = Weights(self.path, self.cfg, np.dtype(dtype), resident)
        tok = find_tokenizer_file(self.path) if self.path.is_dir() else None
        self.tokenizer, self.tokenizer_problem = None, f"{self.path} has no tokenizer.json"
        if tok:  # a tokenizer that is not Qwen3's leaves the model usable with token ids
            try:
                self.tokenizer = Tokenizer(tok)
            except Q3RefError as e:
                self.tokenizer_problem = str(e)
        raw = read_config(self.path / "config.json") if self.path.is_dir() else {}
        self.is_random = RANDOM_MARK in raw  # bundled or generated test weights
        self.kind = checkpoint_kind(self.path, self.weights, raw, self.tokenizer)
        self.kernels = kernels
        # What encode/trace compute with: the reference itself, or a simulation of a LiteRT
        # recipe (quant.py) on the runtime's activation quantization.
        self.quant, self.runtime = quant, runtime
        if quant == "none":
            self.compute = (self.weights, kernels)
        elif runtime == "llama.cpp":  # a GGUF recipe on llama.cpp's CPU backend (formats/gguf/sim.py),
            # with its default flash attention unless flash_attn=False (-fa off)
            from .formats.gguf.sim import simulate, types_for

            self.compute = simulate(self.weights, kernels, types_for(quant, self.cfg, self.kind == "reranker"), flash=flash_attn)
        elif quant in SIMULATIONS and runtime in ("xnnpack", "builtin"):
            self.compute = simulation(self.weights, kernels, quant, runtime)
        else:
            raise Q3RefError(f"--quant must be none or one of {', '.join(SIMULATIONS)} with --runtime xnnpack or "
                             f"builtin (or a GGUF type with --runtime llama.cpp), got {quant!r}, {runtime!r}")

    def __repr__(self):
        return f"q3ref.Model({str(self.path)!r}, D={self.cfg.hidden_size}, L={self.cfg.num_hidden_layers})"

    # ------------------------------------------------------------------ tokens
    def tokenize(self, texts, prompt_name=None, instruction=None, max_length=None, strip=False) -> list[list[int]]:
        """Exact ids, one list per text, each ending in exactly one <|endoftext|> (151643).
        Whitespace is kept, as sentence-transformers 6 does; strip=True strips prompt + text, as
        sentence-transformers up to 5.x did."""
        if self.tokenizer is None:
            raise Q3RefError(f"{self.tokenizer_problem}; pass token ids (--ids) instead of text")
        texts = [texts] if isinstance(texts, str) else list(texts)
        return [self.tokenizer.encode(t, prompt_name, instruction, max_length, strip) for t in texts]

    def check_ids(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise Q3RefError("token ids must be a non-empty list of integers")
        bad = ids[(ids < 0) | (ids >= self.cfg.vocab_size)]
        if bad.size:
            raise Q3RefError(f"token id {int(bad[0])} is outside the vocabulary (0..{self.cfg.vocab_size - 1})")
        return ids.astype(np.int64)

    # ------------------------------------------------------------------ embeddings
    def runtime_batch(self, batch_size):
        """Sequences per forward: a simulated runtime computes each text alone, as llama.cpp computes
        a lone request (its repacked K-quant matmuls round rows in groups of four otherwise than the
        rest, so where a text's rows fall in a batch moves them: a padded batch was up to 3e-3 off
        on the Q4_K_M fixture); the reference batches."""
        return 1 if self.quant != "none" else max(1, int(batch_size))

    def encode_ids(self, ids_list, dim=None, batch_size=8, progress=None) -> np.ndarray:
        """Token id lists -> (N, dim) float32 unit vectors. Sequences are batched by length
        (right-padded with the EOS id, masked) and returned in input order."""
        if self.kind == "reranker":
            raise Q3RefError(f"{self.path} is a Qwen3-Reranker checkpoint: it scores pairs (q3ref rerank), "
                             "it does not embed")
        M.check_dim(dim, self.cfg.hidden_size)
        seqs = [self.check_ids(s) for s in ids_list]
        batch_size = self.runtime_batch(batch_size)
        order = np.argsort([-len(s) for s in seqs], kind="stable")
        out = np.zeros((len(seqs), dim or self.cfg.hidden_size), dtype=np.float32)
        for start in range(0, len(seqs), batch_size):
            idx = order[start:start + batch_size]
            # Pad values are masked and never reach a real row; 0 exists in every vocabulary.
            ids, mask = pad([seqs[i] for i in idx], pad_id=0)  # [B, T] each
            out[idx] = M.embed(*self.compute[:1], self.cfg, ids, mask, dim, self.compute[1])
            if progress:
                progress(min(start + batch_size, len(seqs)))
        return out

    def encode(self, texts, prompt_name=None, instruction=None, dim=None, batch_size=8,
               max_length=None, strip=False) -> np.ndarray:
        """Texts -> (N, dim) float32 unit vectors, like SentenceTransformer.encode (6.x; strip=True: 5.x)."""
        single = isinstance(texts, str)
        out = self.encode_ids(self.tokenize(texts, prompt_name, instruction, max_length, strip), dim, batch_size)
        return out[0] if single else out

    # ------------------------------------------------------------------ reranking
    def rerank_ids(self, query, document, instruction=None, max_length=None) -> list[int]:
        """The exact ids the Qwen3-Reranker card's transformers usage feeds for one pair (rerank.py)."""
        from .rerank import MAX_LENGTH, pair_ids

        return pair_ids(self.pair_vocabulary(), query, document, instruction, MAX_LENGTH if max_length is None else max_length)

    def pair_vocabulary(self):
        """What a reranker's pairs and yes/no ids are read from (.hf, .file): q3ref's Tokenizer, or
        the tokenizer file it refused for want of Qwen3's EOS id (a test checkpoint's cut
        vocabulary): a reranker's pairs append no EOS, and its words tokenize all the same."""
        from types import SimpleNamespace

        if self.tokenizer is not None:
            return self.tokenizer
        tok = find_tokenizer_file(self.path) if self.path.is_dir() else None
        if tok is None:
            raise Q3RefError(f"{self.tokenizer_problem}; a reranker's pairs and yes/no ids come from its tokenizer")
        return SimpleNamespace(hf=load_hf(tok), file=tok)

    def answer_ids(self) -> tuple[int, int]:
        """(yes, no): the token ids whose LM head rows a reranker reads (rerank.answer_ids)."""
        from .rerank import answer_ids

        if self.kind != "reranker":
            raise Q3RefError(f"{self.path} is an embedding checkpoint (no LM head, no reranker layout); "
                             "scoring pairs needs a Qwen3-Reranker checkpoint")
        return answer_ids(self.pair_vocabulary())

    def rerank(self, query, documents, instruction=None, max_length=None, batch_size=8) -> np.ndarray:
        """P(yes) per document [N], as the card computes it: softmax over the last position's
        "no" and "yes" logits."""
        from .rerank import scores

        yes_no = self.answer_ids()
        documents = [documents] if isinstance(documents, str) else list(documents)
        if not documents:
            raise Q3RefError("no documents to rerank")
        seqs = [self.rerank_ids(query, d, instruction, max_length) for d in documents]
        for s in seqs:
            self.check_ids(s)
        batch_size = self.runtime_batch(batch_size)
        weights, kernels = self.compute  # the reference, or a runtime's simulation (quant, runtime)
        return scores(weights, self.cfg, kernels, seqs, yes_no, batch_size)

    @staticmethod
    def similarity(a, b) -> np.ndarray:
        """Cosine similarity matrix (N, M); sentence-transformers' default similarity_fn."""
        a, b = np.atleast_2d(a), np.atleast_2d(b)
        if a.shape[-1] != b.shape[-1]:
            raise Q3RefError(f"similarity of {a.shape[-1]}-dim and {b.shape[-1]}-dim vectors: "
                             "encode both with the same dim")
        a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
        return a @ b.T

    # ------------------------------------------------------------------ taps
    def trace(self, text_or_ids, prompt_name=None, instruction=None, dim=None, progress=None, strip=False) -> dict:
        """Every intermediate of one sequence, {tap name: array without batch axis}, in forward
        order, plus 'input_ids'."""
        if isinstance(text_or_ids, str):
            ids = self.tokenize(text_or_ids, prompt_name, instruction, strip=strip)[0]
        elif any(isinstance(t, str) for t in text_or_ids):
            raise Q3RefError("trace takes one text or one sequence's token ids; for several texts, "
                             "call it once per text")
        else:
            ids = text_or_ids
        ids = self.check_ids(ids)
        taps = {}
        M.embed(self.compute[0], self.cfg, ids[None, :], np.ones((1, len(ids)), bool), dim,
                self.compute[1], taps, progress)
        out = {name: taps[name][0] for name in M.tap_names(self.cfg)}
        out["input_ids"] = ids
        return out


def checkpoint_kind(path, weights, config: dict, tokenizer) -> str:
    """"reranker" or "embedding". A reranker has an lm_head.weight of its own (4B, 8B), or, tied
    like Qwen3-Reranker-0.6B, is stored under `model.` with no sentence-transformers modules.json
    and a tokenizer that does not append <|endoftext|>. An
    embedding checkpoint stores the bare decoder, ships modules.json, or appends the EOS (a
    transformers-saved embedding model may carry the `model.` prefix too)."""
    marked = (config.get(RANDOM_MARK) or {}).get("kind")
    if marked:
        return marked
    if getattr(weights, "lm_head", None) is not None:
        return "reranker"
    # (Both kinds' config.json name Qwen3ForCausalLM: the architecture does not tell them apart.)
    if (getattr(weights, "prefixed", False) and not (Path(path) / "modules.json").is_file()
            and tokenizer is not None and not tokenizer.template_appends_eos):
        return "reranker"
    return "embedding"


def pad(seqs, side="right", pad_id=EOS_ID, length=None):
    """List of id arrays -> ids, mask [B, T] with T = the longest (or `length`); pad positions
    hold pad_id and mask False."""
    T = length or max(len(s) for s in seqs)
    ids = np.full((len(seqs), T), pad_id, dtype=np.int64)  # [B, T]
    mask = np.zeros((len(seqs), T), dtype=bool)  # [B, T]
    for b, s in enumerate(seqs):
        sl = slice(0, len(s)) if side == "right" else slice(T - len(s), T)
        ids[b, sl], mask[b, sl] = s, True
    return ids, mask


def load(path=None, dtype="float32", kernels="numba", resident=True, quant="none", runtime="xnnpack",
         flash_attn=True) -> Model:
    """Find the weights (see find_weights) and load them."""
    return Model(find_weights(path), dtype, kernels, resident, quant, runtime, flash_attn)
