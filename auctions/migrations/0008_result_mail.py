from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    """The result mail's marks. Both columns are nullable without a default: adding them rewrites no
    row (a catalog change only), and sessions settled before this stay unmarked, so never mailed."""

    dependencies = [
        ('auctions', '0007_soft_close_audit_triggers'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='biddingsession',
            name='result_mail_due_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='ranking',
            name='result_mailed_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name='biddingsession',
            index=models.Index(condition=models.Q(('result_mail_due_at__isnull', False)), fields=['result_mail_due_at'], name='session_result_mail_due_idx'),
        ),
    ]
