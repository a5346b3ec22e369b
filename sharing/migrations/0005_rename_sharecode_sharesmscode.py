# An SMS code that opens a share, not a worklist's share code (studies.Worklist.share_code).

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("sharing", "0004_translated_names"),
    ]

    operations = [
        migrations.RenameModel(old_name="ShareCode", new_name="ShareSmsCode"),
        migrations.AlterModelOptions(
            name="sharesmscode",
            options={"verbose_name": "share SMS code", "verbose_name_plural": "share SMS codes"},
        ),
    ]
