"""The numpy all-MiniLM-L6-v2 against embeddings sentence-transformers made of the same model
(tests/fixtures/make_minilm_reference.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.dedup.embeddings import MiniLMEmbedder, missing_packages
from tests.paths import FIXTURES

REFERENCE = json.loads((FIXTURES / "minilm_reference.json").read_text())


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    assert missing_packages() == [], "the neardup extra is part of `make setup`"
    return MiniLMEmbedder()


def test_matches_sentence_transformers(embedder):
    assert embedder.max_seq_length == REFERENCE["max_seq_length"] == 256
    ours = embedder.embed(REFERENCE["sentences"])
    reference = np.asarray(REFERENCE["embeddings"], dtype=np.float32)
    assert ours.shape == reference.shape == (6, 384)
    cosines = (ours * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    assert cosines.min() > 0.9999, cosines


def test_unit_vectors_and_batch_independent(embedder):
    texts = REFERENCE["sentences"]
    together = embedder.embed(texts)
    alone = np.stack([embedder.embed([t])[0] for t in texts])
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    # Padding to a batch's longest text must not move an embedding.
    assert np.allclose(together, alone, atol=1e-5)


def test_paraphrase_is_closer_than_another_topic(embedder):
    a, b, c = embedder.embed(REFERENCE["sentences"][:3])
    assert a @ b > 0.9 > a @ c


def test_empty_batch(embedder):
    assert embedder.embed([]).shape == (0, 384)
