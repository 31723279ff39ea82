"""The index of kept instructions: exact pass, cosine pass, replays."""

from __future__ import annotations

import numpy as np
import pytest

from agents.dedup.index import Match, NearDupIndex


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_exact_pass_ignores_case_and_white_space():
    index = NearDupIndex()
    index.add("a", "Write a poem  about the sea.")
    assert index.check("b", "write a POEM about\tthe sea.") == Match("a", "Write a poem  about the sea.", 1.0, "exact")
    assert index.check("c", "Write a poem about the sea!") is None  # punctuation counts
    assert index.has_text(" WRITE a poem about the sea. ") and not index.has_text("Write a poem")


def test_cosine_pass_at_or_above_the_threshold():
    index = NearDupIndex(threshold=0.9)
    index.add("a", "first", unit(1, 0, 0))
    index.add("b", "second", unit(0, 1, 0))
    near = unit(0.1, 1, 0)  # cosine with b: 0.995
    match = index.check("c", "third", near)
    assert match is not None and match.duplicate_of == "b" and match.method == "embedding"
    assert match.similarity == pytest.approx(float(unit(0, 1, 0) @ near), abs=1e-6)
    far = unit(1, 1, 0)  # cosine 0.707 with both
    assert index.check("d", "fourth", far) is None
    for cosine, duplicate in ((0.9001, True), (0.8999, False)):
        v = unit(0, cosine, float(np.sqrt(1 - cosine**2)))
        assert (index.check("e", "fifth", v) is not None) is duplicate, cosine


def test_a_kept_id_is_kept_again_even_against_itself():
    index = NearDupIndex(threshold=0.9)
    index.add("a", "first", unit(1, 0))
    assert index.check("a", "first", unit(1, 0)) is None  # a replay, not its own duplicate
    index.add("a", "first", unit(1, 0))
    assert len(index) == 1


def test_the_matrix_grows_past_its_first_capacity():
    index = NearDupIndex(threshold=0.99)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for n, v in enumerate(vectors):
        index.add(f"i{n}", f"text {n}", v)
    assert len(index) == 200
    match = index.check("new", "other", vectors[150])
    assert match is not None and match.duplicate_of == "i150" and match.similarity == pytest.approx(1.0, abs=1e-5)


def test_exact_only_and_embedding_indexes_do_not_mix():
    index = NearDupIndex()
    index.add("a", "first")
    with pytest.raises(ValueError, match="without embeddings"):
        index.add("b", "second", unit(1, 0))
    with_vectors = NearDupIndex(threshold=0.9)
    with_vectors.add("a", "first", unit(1, 0))
    with pytest.raises(ValueError, match="needs the instruction's vector"):
        with_vectors.add("b", "second")
