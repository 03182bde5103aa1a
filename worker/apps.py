from django.apps import AppConfig


class WorkerConfig(AppConfig):
    name = "worker"

    def ready(self) -> None:
        from auctions.events import session_settled
        from worker.tasks import audit_after_settlement, mail_results_after_settlement

        session_settled.connect(audit_after_settlement, dispatch_uid="worker.audit_after_settlement")
        session_settled.connect(mail_results_after_settlement, dispatch_uid="worker.mail_results_after_settlement")
