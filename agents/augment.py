"""augment: new metadata from the use cases and skills already seen (the paper's metadata
augmentation, its Appendix A.3), to widen what the instructions cover. Off unless asked for:
`codeclm augment` (streams/ops/augmenter.py) reads the metadata topic, takes candidates from
here and sends the chosen ones back to it, where decode takes them like any other metadata.

The rule, and why a combination makes sense by it. A candidate gives the use case of one seen
metadata record A the skill set of another record B (of another use case) when

- A and B share at least one skill, or, with richer metadata, the same domain: they are the
  same kind of work, so B's skills are of use to A's use case (a use case with a skill set from
  an unrelated field, "poetry writing" with "database indexing", is never made);
- B's set brings at least one skill never seen with A's use case (else it adds nothing to
  what the instructions cover);
- B's set has at most `max_skills` skills (the paper's 3), as encode's metadata has;
- the combination (use case and set of skills, ignoring case, spaces and order) is new: not
  any metadata seen, augmented or not.

Only metadata that did not come from augmentation is combined (no combinations of combinations).
Each candidate's id is the hash of its combination (`schemas.metadata_id_for`), so making it
again gives the same id: a rerun never makes, nor pays for, a combination twice. The order is
fixed: one candidate per use case in turn (use cases by name), within a use case the ones
bringing more new skills first, then by id; so a small `--count` spreads over the use cases.

With `--check model` the strong model also answers, for each candidate in that order, whether
the combination makes sense (the `augment` prompt of the prompt set, Yes or No); a No is kept
(streams side) so it is not asked again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import zip_longest

from agents.base import Asked, Budget, ParseFailure, ask
from agents.parsing import as_data, strip_emphasis
from agents.prompt_sets import PAPER, PromptSet
from agents.settings import PipelineSettings
from llm.base import ChatModel, Message
from schemas import LLMCall, Metadata, MetadataSummary, PromptSetRef, metadata_id_for, normalise_text

STAGE_NAME = "augment"  # the stage on dead letters of refused combinations; the purpose of its LLM calls
PURPOSE = "augment"
# Candidates looked at per use case: enough to spread any target over the use cases, bounded
# so that a skill every metadata shares ("clear writing") does not make the work quadratic.
MAX_CANDIDATES_PER_USE_CASE = 64

Key = tuple[str, frozenset[str]]  # a combination, normalised: use case, set of skills


def combination_key(use_case: str, skills: Iterable[str]) -> Key:
    return normalise_text(use_case), frozenset(normalise_text(s) for s in skills)


@dataclass(frozen=True)
class Candidate:
    """A new combination: a use case, a skill set seen with another use case, and the ids of
    the two metadata records it came from (the use case's, then the skills')."""

    use_case: str
    skills: tuple[str, ...]
    domain: str | None
    augmented_from: tuple[str, ...]
    new_skills: int  # skills never seen with this use case

    @property
    def id(self) -> str:
        return metadata_id_for(self.use_case, self.skills)

    @property
    def key(self) -> Key:
        return combination_key(self.use_case, self.skills)


def candidates(seen: Sequence[Metadata], *, max_skills: int) -> list[Candidate]:
    """Every combination the rule allows (see the module's docstring), each once, in the order
    augmentation takes them."""
    known = {combination_key(m.metadata.use_case, m.metadata.skills) for m in seen}
    sources = _distinct([m for m in seen if not m.augmented_from])
    by_use_case: dict[str, list[Metadata]] = {}
    with_skill: dict[str, list[Metadata]] = {}
    in_domain: dict[str, list[Metadata]] = {}
    for m in sources:
        by_use_case.setdefault(normalise_text(m.metadata.use_case), []).append(m)
        for skill in _skill_keys(m):
            with_skill.setdefault(skill, []).append(m)
        if m.metadata.domain:
            in_domain.setdefault(normalise_text(m.metadata.domain), []).append(m)
    per_use_case = []
    for use_case in sorted(by_use_case):
        own = by_use_case[use_case]
        skills_seen = {skill for m in own for skill in _skill_keys(m)}
        found = list(_for_use_case(own, skills_seen, with_skill, in_domain, known, max_skills))
        per_use_case.append(sorted(found, key=lambda c: (-c.new_skills, c.id)))
    return [c for turn in zip_longest(*per_use_case) for c in turn if c is not None]


def _for_use_case(
    own: list[Metadata],
    skills_seen: set[str],
    with_skill: dict[str, list[Metadata]],
    in_domain: dict[str, list[Metadata]],
    known: set[Key],
    max_skills: int,
) -> Iterator[Candidate]:
    """The candidates of one use case (`own`: its metadata records, by id), each once."""
    made: set[Key] = set()
    for a in own:
        neighbours = [n for skill in _skill_keys(a) for n in with_skill.get(skill, ())]
        if a.metadata.domain:
            neighbours += in_domain.get(normalise_text(a.metadata.domain), [])
        for b in neighbours:
            if len(made) >= MAX_CANDIDATES_PER_USE_CASE:
                return
            if normalise_text(b.metadata.use_case) == normalise_text(a.metadata.use_case):
                continue
            skills = b.metadata.skills
            key = combination_key(a.metadata.use_case, skills)
            new = len(key[1] - skills_seen)
            if new == 0 or len(key[1]) > max_skills or key in known or key in made:
                continue
            made.add(key)
            yield Candidate(a.metadata.use_case, skills, a.metadata.domain, (a.id, b.id), new)


def _distinct(records: Sequence[Metadata]) -> list[Metadata]:
    """One record per combination (the first by id), by id: the order never depends on the topic's."""
    out: dict[Key, Metadata] = {}
    for m in sorted(records, key=lambda m: m.id):
        out.setdefault(combination_key(m.metadata.use_case, m.metadata.skills), m)
    return list(out.values())


def _skill_keys(m: Metadata) -> list[str]:
    return sorted({normalise_text(s) for s in m.metadata.skills})


def augmented_record(
    candidate: Candidate, calls: tuple[LLMCall, ...] = (), prompts: PromptSetRef | None = None
) -> Metadata:
    """The metadata record of a candidate: a root of its own (no seed), its lineage in
    `augmented_from`; with `--check model`, the check's calls and prompt set on it."""
    return Metadata(
        id=candidate.id,
        seed_id=candidate.id,
        parent_id=None,
        seed_text="",
        metadata=MetadataSummary(use_case=candidate.use_case, skills=candidate.skills, domain=candidate.domain),
        llm_calls=calls,
        prompts=prompts,
        augmented_from=candidate.augmented_from,
    )


# -- the strong model's check ------------------------------------------------------------------
_VERDICT = re.compile(r"^\W*(?:(?:answer|verdict)\s*:\s*)?\W*(yes|no)\b", re.I)


def build_check_prompt(candidate: Candidate, prompts: PromptSet = PAPER) -> list[Message]:
    """The set's augment prompt, the combination as data."""
    return prompts.augment.messages(use_case=as_data(candidate.use_case), skills=as_data(", ".join(candidate.skills)))


def parse_check(text: str) -> bool | ParseFailure:
    """Yes (True) or No (False) from the first line that says either: `Yes`, `**No.**`,
    `Answer: yes, because ...`; ParseFailure otherwise."""
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _VERDICT.match(strip_emphasis(line))
        if match:
            return match.group(1).casefold() == "yes"
        break
    return ParseFailure("no Yes or No at the start of the answer", text)


async def check(
    model: ChatModel, candidate: Candidate, pipeline: PipelineSettings, prompts: PromptSet = PAPER
) -> Asked[bool]:
    """The strong model's verdict on a candidate (a judgement: the judge's temperature and
    budget). Raises StageFailure when the model fails or its answers never parse."""
    return await ask(
        model,
        build_check_prompt(candidate, prompts),
        parse_check,
        purpose=PURPOSE,
        budget=Budget.judge(pipeline),
    )
