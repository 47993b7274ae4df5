"""Loaders of the models users bring (core.user_models sends each reference to one): a factory in a
Python file, a pickled module, a Hugging Face folder; each ends in core.loaders.user_spec.finish."""
