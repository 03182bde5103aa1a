import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations


class Migration(migrations.Migration):
    """The audit trail's triggers with the soft-close terms (after history 0002 added their columns)."""

    dependencies = [
        ('auctions', '0006_soft_close'),
        ('history', '0002_soft_close_terms'),
    ]

    operations = [
        pgtrigger.migrations.AddTrigger(
            model_name='biddingsession',
            trigger=pgtrigger.compiler.Trigger(name='create_insert', sql=pgtrigger.compiler.UpsertTriggerSql(func='INSERT INTO "history_sessionchange" ("alpha", "beta", "extend_by_seconds", "extend_window_seconds", "gamma", "hard_end_time", "inventory", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "scheduled_end_time", "start_time", "upset_price") VALUES (NEW."alpha", NEW."beta", NEW."extend_by_seconds", NEW."extend_window_seconds", NEW."gamma", NEW."hard_end_time", NEW."inventory", _pgh_attach_context(), NOW(), \'create\', NEW."id", NEW."scheduled_end_time", NEW."start_time", NEW."upset_price"); RETURN NULL;', hash='9787571bc994aa7ed8f5421b0dd3dfd0a8e82c83', operation='INSERT', pgid='pgtrigger_create_insert_d08d0', table='auctions_biddingsession', when='AFTER')),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name='biddingsession',
            trigger=pgtrigger.compiler.Trigger(name='update_update', sql=pgtrigger.compiler.UpsertTriggerSql(condition='WHEN (OLD."alpha" IS DISTINCT FROM (NEW."alpha") OR OLD."beta" IS DISTINCT FROM (NEW."beta") OR OLD."extend_by_seconds" IS DISTINCT FROM (NEW."extend_by_seconds") OR OLD."extend_window_seconds" IS DISTINCT FROM (NEW."extend_window_seconds") OR OLD."gamma" IS DISTINCT FROM (NEW."gamma") OR OLD."hard_end_time" IS DISTINCT FROM (NEW."hard_end_time") OR OLD."inventory" IS DISTINCT FROM (NEW."inventory") OR OLD."scheduled_end_time" IS DISTINCT FROM (NEW."scheduled_end_time") OR OLD."start_time" IS DISTINCT FROM (NEW."start_time") OR OLD."upset_price" IS DISTINCT FROM (NEW."upset_price"))', func='INSERT INTO "history_sessionchange" ("alpha", "beta", "extend_by_seconds", "extend_window_seconds", "gamma", "hard_end_time", "inventory", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "scheduled_end_time", "start_time", "upset_price") VALUES (NEW."alpha", NEW."beta", NEW."extend_by_seconds", NEW."extend_window_seconds", NEW."gamma", NEW."hard_end_time", NEW."inventory", _pgh_attach_context(), NOW(), \'update\', NEW."id", NEW."scheduled_end_time", NEW."start_time", NEW."upset_price"); RETURN NULL;', hash='515fe5ef3641a3b6f93c3fade71f5b795adb7bef', operation='UPDATE', pgid='pgtrigger_update_update_2ae1b', table='auctions_biddingsession', when='AFTER')),
        ),
    ]
