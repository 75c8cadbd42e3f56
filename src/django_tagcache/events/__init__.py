"""Cross-service invalidation events: consuming other services' streams (docs/events.md).

Publishing is the store's (``core/store.py`` appends each event in the invalidation's own script
call); this package reads other services' streams with a consumer group and applies their events
to this service's Redis through the ordinary invalidation path.
"""
