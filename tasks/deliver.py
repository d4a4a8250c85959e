"""Delivery backends behind one interface: the file outbox and SMTP."""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
import tempfile
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from leadflow.errors import ConfigurationError, DeliveryError
from leadflow.settings import Settings
from tasks.render_email import OutgoingMessage

# Recipient rejections that mean the address does not exist or cannot take mail:
# the lead should never be mailed again.
HARD_BOUNCE_CODES = frozenset({550, 551, 553})

_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


class MailServerUnavailable(DeliveryError):
    """The mail server cannot be reached at all; nothing in the batch can go out now."""

    def __init__(self, message: str) -> None:
        super().__init__(message, outcome="deferred")


class Mailer(Protocol):
    """Hands messages to a destination; `send` raises `DeliveryError` with the outcome to record."""

    description: str

    def send(self, message: OutgoingMessage | EmailMessage, *, sender: str, recipient: str) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Mailer: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class _MailerBase:
    def close(self) -> None:
        pass

    def __enter__(self) -> _MailerBase:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _outgoing(message: OutgoingMessage | EmailMessage) -> OutgoingMessage:
    return message if isinstance(message, OutgoingMessage) else OutgoingMessage.from_email(message)


def outbox_file_name(message_id: str) -> str:
    """Name the .eml file after the Message-ID, so a message written twice is still one file."""
    core = message_id.strip("<>")
    safe = "".join(character if character.isalnum() or character in "-._@" else "_" for character in core)
    return f"{safe}.eml"


class FileOutbox(_MailerBase):
    """Writes each message as an RFC 5322 .eml file into a folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.description = f"the outbox folder {folder}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the outbox folder {folder}: {exc.strerror}; set LEADFLOW_OUTBOX_DIR to a writable folder"
            ) from exc

    def send(self, message: OutgoingMessage | EmailMessage, *, sender: str, recipient: str) -> None:
        outgoing = _outgoing(message)
        target = self.folder / outbox_file_name(outgoing.message_id)
        data = outgoing.data
        # Write to a temporary file and rename it, so a crash never leaves half a message.
        try:
            descriptor, temporary = tempfile.mkstemp(dir=self.folder, prefix=".writing-", suffix=".eml")
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.replace(temporary, target)
        except OSError as exc:
            raise MailServerUnavailable(f"cannot write to {self.folder}: {exc.strerror}") from exc


class _FinalDotTracking:
    """Notes when the end-of-data marker goes out: from then on the server may have accepted the message."""

    final_dot_sent = False

    def send(self, s: bytes | str) -> None:
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            # Set before sending: if the send fails part-way the server may still have it all.
            self.final_dot_sent = True
        super().send(s)  # type: ignore[misc]


class _TrackingSMTP(_FinalDotTracking, smtplib.SMTP):
    pass


class _TrackingSMTPSSL(_FinalDotTracking, smtplib.SMTP_SSL):
    pass


class SmtpMailer(_MailerBase):
    """Sends over one SMTP connection, opened on the first message and reused until `close`.

    The URL is `smtp://[user:password@]host[:port][?starttls=true]` or
    `smtps://...` for implicit TLS (default ports 25 and 465).
    """

    def __init__(self, url: str, *, timeout: float, local_hostname: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigurationError(
                "LEADFLOW_SMTP_URL must look like smtp://host:port, smtp://user:password@host:587?starttls=true "
                "or smtps://user:password@host:465"
            )
        query = {name: values[-1].lower() for name, values in parse_qs(parts.query).items()}
        self.implicit_tls = parts.scheme == "smtps"
        self.starttls = query.get("starttls", "false") in ("1", "true", "yes")
        self.host = parts.hostname
        try:
            self.port = parts.port or (465 if self.implicit_tls else 25)
        except ValueError as exc:
            raise ConfigurationError(f"LEADFLOW_SMTP_URL has an invalid port: {exc}") from exc
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self.local_hostname = local_hostname
        self.description = f"the SMTP server {self.host}:{self.port}"
        self._connection: _TrackingSMTP | _TrackingSMTPSSL | None = None

    def _connect(self) -> _TrackingSMTP | _TrackingSMTPSSL:
        connection: _TrackingSMTP | _TrackingSMTPSSL
        try:
            if self.implicit_tls:
                connection = _TrackingSMTPSSL(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                connection = _TrackingSMTP(self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout)
            connection.ehlo()
            if self.starttls:
                connection.starttls(context=ssl.create_default_context())
                connection.ehlo()
            if self.username is not None:
                connection.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise ConfigurationError(
                f"{self.description} rejected the login for user {self.username!r} ({exc.smtp_code}); "
                "check the user and password in LEADFLOW_SMTP_URL"
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise MailServerUnavailable(f"cannot connect to {self.description}: {exc}") from exc
        return connection

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def send(self, message: OutgoingMessage | EmailMessage, *, sender: str, recipient: str) -> None:
        data = _outgoing(message).data
        # A connection the server closed while idle fails before any data goes out,
        # so one retry on a fresh connection cannot duplicate the message.
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = self._connect()
            connection = self._connection
            connection.final_dot_sent = False
            try:
                self._transaction(connection, data, sender=sender, recipient=recipient)
                return
            except DeliveryError as exc:
                if exc.smtp_code == 421:
                    # 421 means the server is closing the connection; the next message opens a new one.
                    self._drop_connection()
                raise
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                self._drop_connection()
                if connection.final_dot_sent:
                    raise DeliveryError(
                        f"the connection to {self.description} dropped after the message was handed over: {exc}",
                        outcome="ambiguous",
                    ) from exc
                if attempt == 2:
                    raise DeliveryError(
                        f"the connection to {self.description} dropped twice: {exc}", outcome="deferred"
                    ) from exc

    def _transaction(self, connection: smtplib.SMTP, data: bytes, *, sender: str, recipient: str) -> None:
        if connection.has_extn("pipelining"):
            self._pipelined_transaction(connection, data, sender=sender, recipient=recipient)
            return
        code, reply = connection.mail(sender)
        if code != 250:
            self._reset(connection)
            raise _rejection("MAIL FROM", code, reply)
        code, reply = connection.rcpt(recipient)
        if code not in (250, 251):
            self._reset(connection)
            raise _rejection("RCPT TO", code, reply, recipient_step=True)
        try:
            code, reply = connection.data(data)
        except smtplib.SMTPDataError as exc:
            self._reset(connection)
            raise _rejection("DATA", exc.smtp_code, exc.smtp_error) from exc
        if code != 250:
            raise _rejection("end of DATA", code, reply)

    def _pipelined_transaction(self, connection: smtplib.SMTP, data: bytes, *, sender: str, recipient: str) -> None:
        """Send MAIL, RCPT and DATA in one write and read their three replies (RFC 2920).

        Two round trips per message instead of four; the replies are judged
        in order, so the outcome is the same as without pipelining.
        """
        connection.send(f"MAIL FROM:{_envelope(sender)}\r\nRCPT TO:{_envelope(recipient)}\r\nDATA\r\n".encode("ascii"))
        mail_code, mail_reply = connection.getreply()
        rcpt_code, rcpt_reply = connection.getreply()
        data_code, data_reply = connection.getreply()
        if data_code == 354 and (mail_code != 250 or rcpt_code not in (250, 251)):
            # The server took DATA although the envelope failed: end it with an empty message.
            connection.send(b".\r\n")
            connection.getreply()
        if mail_code != 250:
            self._reset(connection)
            raise _rejection("MAIL FROM", mail_code, mail_reply)
        if rcpt_code not in (250, 251):
            self._reset(connection)
            raise _rejection("RCPT TO", rcpt_code, rcpt_reply, recipient_step=True)
        if data_code != 354:
            self._reset(connection)
            raise _rejection("DATA", data_code, data_reply)
        # The same dot-stuffing and final dot as smtplib's data(); the message already ends in CRLF.
        body = _LEADING_DOT.sub(b"..", data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        connection.send(body + b".\r\n")
        code, reply = connection.getreply()
        if code != 250:
            raise _rejection("end of DATA", code, reply)

    @staticmethod
    def _reset(connection: smtplib.SMTP) -> None:
        try:
            connection.rset()
        except (smtplib.SMTPException, OSError):
            pass

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._drop_connection()


def _envelope(address: str) -> str:
    """Return `<address>` for MAIL and RCPT; smtplib's quoteaddr parses each address again, at a cost per message."""
    if not address.isascii() or not address.isprintable() or any(character in address for character in " <>"):
        raise DeliveryError(f"{address!r} is not a valid envelope address; fix it before sending", outcome="failed")
    return f"<{address}>"


def _rejection(step: str, code: int, reply: bytes | str, *, recipient_step: bool = False) -> DeliveryError:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    if 400 <= code < 500:
        outcome = "deferred"
    elif recipient_step and code in HARD_BOUNCE_CODES:
        outcome = "bounced"
    else:
        outcome = "failed"
    return DeliveryError(f"the server replied {code} {text} to {step}", outcome=outcome, smtp_code=code)


def open_mailer(settings: Settings) -> Mailer:
    """Return the SMTP mailer when LEADFLOW_SMTP_URL is set, else the file outbox."""
    if settings.smtp_url is not None:
        return SmtpMailer(
            settings.smtp_url.get_secret_value(),
            timeout=settings.smtp_timeout_seconds,
            # The host name, not socket.getfqdn(): that would make a DNS query on every connection.
            local_hostname=socket.gethostname() or "localhost",
        )
    return FileOutbox(settings.resolved_outbox_dir)
