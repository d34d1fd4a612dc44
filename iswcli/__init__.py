"""iswt: importance-sampled LLM post-training, as a command-line toolkit."""

__version__ = "0.1.0"
