# Usernames that look alike (issue 13): a unique skeleton per user (accounts.usernames), filled in
# for the users already there, oldest first. A user whose name looks like an older user's keeps an
# empty skeleton (the column allows several NULLs); registration still refuses new look-alikes of
# both, since the older one holds the skeleton.

import accounts.models
from django.db import migrations, models


def fill_skeletons(apps, schema_editor):
    from accounts.usernames import username_skeleton

    User = apps.get_model("accounts", "User")
    taken, batch = set(), []
    for user in User.objects.order_by("date_joined", "pk").only("pk", "username").iterator(chunk_size=2000):
        skeleton = username_skeleton(user.username)
        if skeleton in taken:
            continue
        taken.add(skeleton)
        user.username_skeleton = skeleton
        batch.append(user)
        if len(batch) >= 2000:
            User.objects.bulk_update(batch, ["username_skeleton"])
            batch = []
    User.objects.bulk_update(batch, ["username_skeleton"])


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
    ]

    operations = [
        migrations.AlterModelManagers(
            name='user',
            managers=[
                ('objects', accounts.models.UserManager()),
            ],
        ),
        migrations.AddField(
            model_name='user',
            name='username_skeleton',
            field=models.TextField(blank=True, editable=False, null=True, unique=True),
        ),
        migrations.RunPython(fill_skeletons, migrations.RunPython.noop),
    ]
