"""The LLM layer: the `ChatModel` seam (base), its aiohttp client of OpenAI-compatible
endpoints (client), the LLM double for tests and benchmarks (double), and the embedded small
model for the demo (local). Only the seam is exported here, so importing it stays cheap."""

from llm.base import ChatModel, Completion, LLMError, Message

__all__ = ["ChatModel", "Completion", "LLMError", "Message"]
