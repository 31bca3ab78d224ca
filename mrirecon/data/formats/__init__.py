"""The readers of `data.source`, one module each: a `Format` (mrirecon/data/source.py) registered
by `@register_format("<name>")` with its content test, its constructor and its own settings.

Every module of this package is imported when the registry is first read (mrirecon/registry.py),
so a new format is one module here (or in an external plug-in) and no edit elsewhere.
"""
