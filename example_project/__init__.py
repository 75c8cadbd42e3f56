"""The example shop: every feature of django-tagcache in one small Django project (docs/example.md)."""
