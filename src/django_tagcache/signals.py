"""Signals sent by django-tagcache."""

from __future__ import annotations

from django.dispatch import Signal

#: Sent after tags were invalidated, with ``tags`` (tuple of tag strings), ``removed`` (entries
#: deleted) and ``source`` (the ``source=`` given to the call, or None).
tags_invalidated = Signal()
