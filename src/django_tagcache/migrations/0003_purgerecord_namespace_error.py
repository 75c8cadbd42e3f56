# Written by hand: the namespace a purge ran in, and the error of a purge that failed part way.

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = (("django_tagcache", "0002_pendinginvalidation"),)

    operations = (
        migrations.AddField(
            model_name="purgerecord",
            name="namespace",
            field=models.CharField(
                blank=True, default="", help_text="The namespace purged; empty for none.", max_length=64
            ),
        ),
        migrations.AddField(
            model_name="purgerecord",
            name="error",
            field=models.TextField(
                blank=True,
                default="",
                help_text="Why the purge failed part way, if it did: the tags may then be only partly "
                "invalidated, and more entries removed than counted.",
            ),
        ),
    )
