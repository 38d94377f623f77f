"""llmbudget gateway: an OpenAI-compatible proxy that meters, prices and budgets LLM traffic."""

__version__ = "0.1.0"
