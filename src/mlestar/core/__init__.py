"""The lowest layer: types and contracts every part of mlestar shares, and nothing else.

``task`` (the competition as the pipeline sees it), ``contract`` (what scripts print and write),
``events`` (the event bus), ``steps`` (places in the loops and their store keys), ``records``
(search results, LLM calls) and ``pyparse`` (thread-safe parsing). Nothing here imports another
part of mlestar except ``mlestar.errors``.
"""
