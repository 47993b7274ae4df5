"""Errors a user can cause and fix; the CLI and the dashboard show them as one line."""


class PruneLabError(Exception):
    """A problem with the user's input (bad ratio, unknown model, wrong config version, ...)."""
