"""A crash-free reference run of the pipeline, in process and without Kafka: each stage's own
`process` function, with a ChatModel that answers exactly as the LLM double does (its answers
are pure functions of model and messages). What the broker pipeline produces for the same seeds
must match it, id for id, however often its worker was killed. (Which of two duplicates dedup
keeps depends on the order they arrive in, so compare id for id only runs without duplicates.)"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from agents import contrast, decode, encode, tailor
from agents import filter as filter_stage
from agents.base import Emit, StageContext, StageFailure
from agents.dedup import Deduplicator
from agents.dedup.embeddings import embedder
from llm.base import Completion, Message
from llm.double import answer_for, classify, count_tokens, truncate_words
from schemas import Metadata, Record, Seed
from streams.settings import Settings


class DoubleAnswers:
    """The LLM double's answers without its server (and so without its faults or latency)."""

    def __init__(self, model: str):
        self._model = model
        self.calls = 0

    @property
    def model(self) -> str:
        return self._model

    async def complete(
        self, messages: list[Message], *, temperature: float, max_tokens: int, sample: int = 0
    ) -> Completion:
        self.calls += 1
        text = answer_for(classify(messages), messages, self._model)
        finish_reason = "stop"
        if count_tokens(text) > max_tokens:  # as the double cuts an answer over the budget
            text, finish_reason = truncate_words(text, max_tokens), "length"
        return Completion(text, self._model, 0, count_tokens(text), 0.0, finish_reason)


STAGE_OF_TOPIC = {
    "seeds": encode.process,
    "metadata": decode.process,
    "decoded": None,  # dedup: a Deduplicator per run, below
    "basic": contrast.process,
    "tailored": contrast.process,
    "scored": filter_stage.process,
    "retry": tailor.process,
}


@dataclass
class Reference:
    """Ids of every record each topic received, and the LLM calls it took."""

    ids: dict[str, set[str]] = field(default_factory=dict)
    records: list[tuple[str, Record]] = field(default_factory=list)  # (topic, record), in order
    calls: int = 0


async def reference_run(settings: Settings, seeds: list[Seed], metadata: Sequence[Metadata] = ()) -> Reference:
    """Every record the stages make from `seeds` and from root `metadata` (fed as metadata)."""
    strong = DoubleAnswers(settings.strong.model)
    target = DoubleAnswers(settings.target.model)
    context = StageContext(strong=strong, target=target, judge=strong, pipeline=settings.pipeline)
    dedup = Deduplicator(embed=embedder(settings.dedup), threshold=settings.dedup.similarity_threshold)
    result = Reference()
    queue: deque[tuple[str, Record]] = deque([*(("seeds", s) for s in seeds), *(("metadata", m) for m in metadata)])
    while queue:
        topic, record = queue.popleft()
        result.ids.setdefault(topic, set()).add(record.id)
        result.records.append((topic, record))
        if topic not in STAGE_OF_TOPIC:
            continue
        process = STAGE_OF_TOPIC[topic]
        try:
            if process is None:
                emits = [await dedup.decide(record)] if settings.dedup.enabled else [Emit("basic", record)]  # type: ignore[arg-type]
            else:
                emits = await process(record, context)  # type: ignore[arg-type]
        except StageFailure as failure:  # the double's answers always parse; say so if not
            raise AssertionError(f"reference run: {topic} {record.id}: {failure.reason}") from failure
        queue.extend((e.topic, e.record) for e in emits)
    result.calls = strong.calls + target.calls
    return result
