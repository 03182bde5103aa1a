"""The audit trail in the Django admin: an object's "History" page shows every recorded change of
its outcome-changing fields (history.selectors.audit_trail), whatever path made it, above Django's
own admin log."""

from history.selectors import audit_trail


class AuditTrailHistoryMixin:
    """For a ModelAdmin whose model has a trail (`audit_trail_model`: "user" or "session")."""

    audit_trail_model: str
    object_history_template = "admin/history/audit_trail.html"

    def history_view(self, request, object_id, extra_context=None):
        trail = audit_trail(model=self.audit_trail_model, object_id=object_id)
        return super().history_view(request, object_id, extra_context={**(extra_context or {}), "trail": trail})
