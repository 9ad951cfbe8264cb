"""Local fakes of the OpenAI, Anthropic and Gemini wire protocols, faithful enough for the official SDKs."""

from .anthropic_api import FakeAnthropic
from .gemini_api import FakeGemini
from .openai_api import FakeOpenAI
from .server import FakeServer, RecordedRequest, Reply

__all__ = ["FakeAnthropic", "FakeGemini", "FakeOpenAI", "FakeServer", "RecordedRequest", "Reply"]
