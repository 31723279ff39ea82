"""The LLM double: a stand-in for an OpenAI-compatible model server, for tests and benchmarks;
not a model. It answers each pipeline prompt (encode, decode, rubrics, tailor, judge, answer,
and augment's check) of both prompt sets with a deterministic, well-formed reply, and has knobs
for latency, rate limits, server errors, hangs and malformed output, drawn from a seeded RNG so
runs repeat.

    python -m llm.double --port 8100 --latency-ms 200 --rate-429 0.05 --retry-after-s 1
    python -m llm.double --style chat    # answers formatted as strong chat models write them

It serves OpenAI's chat completions (/v1/chat/completions), Azure OpenAI's deployments and
Anthropic's Messages API, and emulates the providers' quirks a client must handle: which token
parameter a model takes, a fixed temperature, unknown models, the context length, where the key
goes, a gateway's own headers, each refused with the provider's exact error body.

    python -m llm.double --token-parameter max_completion_tokens --fixed-temperature --api-key sk-...

By job: prompts.py reads a prompt (its kind, its fields); choices.py makes what the double
says from it; plain.py and chat.py write that in the two styles; replies.py picks the reply
(`answer_for`); calls.py reads a request of any endpoint and writes the reply bodies;
providers.py holds the providers' error bodies; faults.py the knobs and counters; server.py
the aiohttp app; cli.py the command line. The names other modules use are re-exported here.
"""

from llm.double.calls import Call, chat_body, count_tokens, message_body, truncate_words
from llm.double.chat import chat_decode_instructions, chat_rubric_pairs, chat_tailored_instruction
from llm.double.choices import encode_fields, judge_scores, stable_hash
from llm.double.cli import main
from llm.double.faults import FIVE_XX_CYCLE, MALFORMED_TEXT, DoubleConfig, DoubleStats, draw_fault
from llm.double.plain import decode_reply, encode_reply, rubrics_reply, tailor_reply
from llm.double.prompts import KINDS, classify, classify_text, content_words
from llm.double.providers import redact_key
from llm.double.replies import STYLES, answer_for
from llm.double.server import LLMDouble

__all__ = [
    "FIVE_XX_CYCLE",
    "KINDS",
    "MALFORMED_TEXT",
    "STYLES",
    "Call",
    "DoubleConfig",
    "DoubleStats",
    "LLMDouble",
    "answer_for",
    "chat_body",
    "chat_decode_instructions",
    "chat_rubric_pairs",
    "chat_tailored_instruction",
    "classify",
    "classify_text",
    "content_words",
    "count_tokens",
    "decode_reply",
    "draw_fault",
    "encode_fields",
    "encode_reply",
    "judge_scores",
    "main",
    "message_body",
    "redact_key",
    "rubrics_reply",
    "stable_hash",
    "tailor_reply",
    "truncate_words",
]
