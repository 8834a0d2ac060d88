"""The embedded default: a rendered video-QA world, the small video LLM trained on it, and their tokenizer."""
