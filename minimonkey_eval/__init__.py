"""minimonkey-eval: reproduce the Mini-Monkey benchmark table through VLMEvalKit."""
__version__ = "0.1.0"
