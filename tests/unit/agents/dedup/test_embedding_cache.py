"""The dedup stage's embedding cache: a restarted worker rebuilds its index without embedding
the kept instructions again."""

from __future__ import annotations

import numpy as np

from agents.dedup.embeddings import EmbeddingCache


class CountingEmbed:
    def __init__(self):
        self.texts: list[str] = []

    def __call__(self, texts):
        self.texts.extend(texts)
        out = np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_vectors_survive_a_restart_and_only_new_texts_are_embedded(tmp_path):
    path = tmp_path / "cache.sqlite"
    first = CountingEmbed()
    cache = EmbeddingCache(path, first)
    vectors = cache(["alpha", "beta"])
    cache.close()

    again = CountingEmbed()
    cache = EmbeddingCache(path, again)
    mixed = cache(["Beta", "gamma", "alpha"])  # case and spaces aside, as the exact pass
    cache.close()
    assert again.texts == ["gamma"] and cache.hits == 2
    assert np.array_equal(mixed[0], vectors[1]) and np.array_equal(mixed[2], vectors[0])
    assert mixed.shape == (3, 3) and mixed.dtype == np.float32


def test_many_texts_at_once(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache.sqlite", CountingEmbed())
    texts = [f"text {n}" for n in range(1200)]
    assert cache(texts).shape == (1200, 3)
    assert cache(texts).shape == (1200, 3) and cache.hits == 1200
    cache.close()
