"""Local fakes of the OpenAI, Anthropic and Gemini wire protocols, and of Azure OpenAI, Amazon Bedrock and
Vertex AI in front of them, faithful enough for the official SDKs."""

from .anthropic_api import FakeAnthropic
from .azure_openai_api import FakeAzureOpenAI
from .bedrock_api import FakeBedrock
from .gemini_api import FakeGemini
from .openai_api import FakeOpenAI
from .server import FakeServer, RecordedRequest, Reply
from .vertex_api import FakeVertex

__all__ = ["FakeAnthropic", "FakeAzureOpenAI", "FakeBedrock", "FakeGemini", "FakeOpenAI", "FakeServer", "FakeVertex",
           "RecordedRequest", "Reply"]
