"""Affiliate.chat_user_id held the predecessor's Discord bot user ids: make each a Discord identity.

Only values that look like a Discord user id (a snowflake: digits) are copied; anything else is left
for an administrator to link in the admin. The field itself is left as it is.
"""

from django.db import migrations
from django.utils import timezone


def copy_discord_ids(apps, schema_editor):
    Affiliate = apps.get_model("reconciliation", "Affiliate")
    ChatIdentity = apps.get_model("chat", "ChatIdentity")
    now = timezone.now()
    for affiliate_id, user_id in Affiliate.objects.exclude(chat_user_id=None).values_list("id", "chat_user_id"):
        user_id = user_id.strip()
        if user_id.isdigit() and 15 <= len(user_id) <= 20:
            ChatIdentity.objects.get_or_create(
                provider="discord",
                team_id="",
                external_user_id=user_id,
                defaults={"affiliate_id": affiliate_id, "linked_via": "admin", "linked_at": now},
            )


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0001_initial"),
        ("reconciliation", "0005_clientapikey_staff_has_no_client"),
    ]

    operations = [migrations.RunPython(copy_discord_ids, migrations.RunPython.noop)]
