"""A mail backend that writes each message to a file of its own (EMAIL_URL `file:///dir`).

Django's file backend appends every message a backend instance sends to one file, named by the
time and the instance's id(), which Python reuses once an instance is gone: two mailers made in
the same second can write into one file. Here each message is one complete RFC 5322 `.eml` file
with a unique name, written under a temporary name and renamed, so a reader never sees half a
message."""

import os
import uuid
from pathlib import Path

from django.core.mail import InvalidMailer
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone


class FilePerMessageBackend(BaseEmailBackend):
    def __init__(self, *, file_path: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if not file_path:
            raise InvalidMailer("OPTIONS must define 'file_path'.", alias=self.alias)
        self.file_path = Path(file_path).resolve()
        try:
            self.file_path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidMailer(f"cannot create the directory {self.file_path} ({exc})", alias=self.alias) from exc

    def send_messages(self, email_messages) -> int:
        for message in email_messages:
            name = f"{timezone.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex}.eml"
            partial = self.file_path / f".{name}.partial"
            partial.write_bytes(message.message().as_bytes())
            os.replace(partial, self.file_path / name)
        return len(email_messages)
