"""pydeberta: DeBERTa-v2/v3 in NumPy, with Hugging Face transformers' names and numbers."""

__version__ = "0.1.0"
