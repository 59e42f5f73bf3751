"""Bundled study files (``medprobe run demo``, ``medprobe run paper-2601.14774``)."""
