"""The public caching API and what it promises: reads, checked writes, recompute and single
flight, render scopes and tags bubbling up, tags, namespaces, staleness budgets, read fences,
one Redis time budget per unit of work (a request, a command, a task).
Built on :mod:`django_tagcache.core`; imports nothing of ``orm``, ``web`` or ``ops``.
"""

from __future__ import annotations
