"""Model and embedding providers.

Nothing is imported here, so `import carrier_cli.llm.x` stays as cheap as module x. Map:

* `factory`: `create_models(settings, character, provider, model) -> (ChatModel,
  ModelConfig)`, `resolve_model_config`, `create_chat_model`.
* `openai_chat.OpenAIChatModel` (OpenAI, Ollama, vLLM, LM Studio, OpenRouter) and
  `anthropic_chat.AnthropicChatModel`: `complete()`, `stream()`, `list_models()`, `aclose()`.
* `openai_embeddings.OpenAIEmbedder`: remote embeddings (`embeddings` has the local one).
* `retry`: the one retry policy (backoff with full jitter, Retry-After, bounded).
* `tokens`: `count_tokens`, `context_window`, `fit_to_budget`, `trim_messages`.
* `errors`: what goes wrong, worded for the operator (`NoProviderConfigured`,
  `MissingApiKey`, `KeyRejected`, `UnknownModel`, `ProviderUnavailable`, ...) and
  `provider_options()` for first-run help.
"""
