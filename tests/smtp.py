"""A small SMTP server on 127.0.0.1 for tests: it speaks enough of RFC 5321 for smtplib (and so
Django's SMTP backend), keeps every message it accepted, and answers RCPT TO for chosen addresses
with a chosen reply (a temporary 4xx or a permanent 5xx refusal)."""

import email
import email.policy
import socketserver
import threading
import time
from dataclasses import dataclass


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    message: email.message.EmailMessage


class SmtpServer:
    def __init__(self, *, delay: float = 0.0):
        self.received: list[Received] = []
        # address -> reply line for its RCPT TO, e.g. "550 5.1.1 no such user"; others get 250.
        self.refuse: dict[str, str] = {}
        self.delay = delay  # seconds the server takes to accept each message
        self._lock = threading.Lock()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                server._converse(self.rfile, self.wfile)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "SmtpServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def messages_to(self, address: str) -> list[email.message.EmailMessage]:
        with self._lock:
            return [r.message for r in self.received if address in r.recipients]

    def _converse(self, rfile, wfile) -> None:
        def reply(line: str) -> None:
            wfile.write(line.encode() + b"\r\n")
            wfile.flush()

        reply("220 127.0.0.1 test SMTP")
        mail_from, recipients = "", []
        while line := rfile.readline():
            command, _, argument = line.decode().rstrip("\r\n").partition(" ")
            command = command.upper()
            if command == "EHLO":
                reply("250-127.0.0.1")
                reply("250 8BITMIME")
            elif command == "HELO" or command == "NOOP":
                reply("250 OK")
            elif command == "MAIL":
                mail_from, recipients = argument.partition("<")[2].partition(">")[0], []
                reply("250 OK")
            elif command == "RCPT":
                address = argument.partition("<")[2].partition(">")[0]
                refusal = self.refuse.get(address)
                if refusal:
                    reply(refusal)
                else:
                    recipients.append(address)
                    reply("250 OK")
            elif command == "DATA":
                if not recipients:
                    reply("554 no valid recipients")
                    continue
                reply("354 end with <CRLF>.<CRLF>")
                lines = []
                while (data := rfile.readline()) not in (b".\r\n", b""):
                    lines.append(data[1:] if data.startswith(b"..") else data)
                time.sleep(self.delay)
                message = email.message_from_bytes(b"".join(lines), policy=email.policy.default)
                with self._lock:
                    self.received.append(Received(mail_from, recipients, message))
                reply("250 OK queued")
                mail_from, recipients = "", []
            elif command == "RSET":
                mail_from, recipients = "", []
                reply("250 OK")
            elif command == "QUIT":
                reply("221 bye")
                return
            else:
                reply("502 command not implemented")
