"""Renderers: a finished :class:`~analyzer.core.model.Report` in, bytes out.

Renderers never touch the network and never see a secret (the model holds none).
"""
