"""edge toolkit: take small deep-learning models from training to a verified, benchmarked edge artifact."""

__version__ = "0.2.0"
