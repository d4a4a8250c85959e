"""Delivery backends against a real SMTP server on loopback and a real folder."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from leadflow.errors import ConfigurationError, DeliveryError
from tasks.deliver import FileOutbox, MailServerUnavailable, SmtpMailer
from tasks.render_email import RenderedEmail, build_message, compose_message
from tests.conftest import SmtpServer, free_port


def sample_message(recipient: str = "ann@example.com", message_id: str = "<m1@example.com>") -> EmailMessage:
    return build_message(
        RenderedEmail(subject="Hello", text="Hi Ann\n", html="<p>Hi Ann</p>\n"),
        sender_name="Sender",
        sender_address="news@example.com",
        recipient_name="Ann",
        recipient_address=recipient,
        message_id=message_id,
        unsubscribe_url="http://127.0.0.1:8000/unsubscribe/t",
        date=datetime(2026, 12, 4, tzinfo=UTC),
    )


def mailer_for(server: SmtpServer) -> SmtpMailer:
    return SmtpMailer(server.url, timeout=5, local_hostname="localhost")


@pytest.fixture(params=[True, False], ids=["pipelining", "one-command-at-a-time"])
def pipelining(request: pytest.FixtureRequest, smtp_server: SmtpServer) -> bool:
    """Run a test against a server that advertises PIPELINING and against one that does not."""
    smtp_server.handler.pipelining = request.param
    return bool(request.param)


@pytest.mark.usefixtures("pipelining")
class TestSmtp:
    def test_pipelining_only_when_offered(self, smtp_server: SmtpServer, pipelining: bool) -> None:
        with mailer_for(smtp_server) as mailer:
            mailer.send(sample_message(), sender="news@example.com", recipient="ann@example.com")
            assert mailer._connection is not None
            assert mailer._connection.has_extn("pipelining") == pipelining

        assert len(smtp_server.handler.messages) == 1

    def test_leading_dots_arrive_whole(self, smtp_server: SmtpServer) -> None:
        text = ".hidden line\n..two dots\n.\nend\n"
        message = compose_message(
            RenderedEmail(subject="Dots", text=text, html="<p>.</p>\n"),
            sender_name="Sender", sender_address="news@example.com", recipient_name="Ann",
            recipient_address="ann@example.com", message_id="<dots@example.com>", unsubscribe_url=None,
            date=datetime(2026, 12, 4, tzinfo=UTC),
        )

        with mailer_for(smtp_server) as mailer:
            mailer.send(message, sender="news@example.com", recipient="ann@example.com")

        received = email.message_from_bytes(smtp_server.handler.messages[0], policy=policy.default)
        assert received.get_body(("plain",)).get_content().replace("\r\n", "\n") == text

    def test_delivers_over_one_connection(self, smtp_server: SmtpServer) -> None:
        with mailer_for(smtp_server) as mailer:
            for number in range(3):
                recipient = f"lead{number}@example.com"
                mailer.send(sample_message(recipient, f"<m{number}@example.com>"), sender="news@example.com", recipient=recipient)

        received = [email.message_from_bytes(data, policy=policy.default) for data in smtp_server.handler.messages]
        assert [message["Message-ID"] for message in received] == ["<m0@example.com>", "<m1@example.com>", "<m2@example.com>"]
        assert received[0].get_content_type() == "multipart/alternative"

    @pytest.mark.parametrize(("reply", "outcome"), [("550 5.1.1 no such user", "bounced"), ("451 4.3.0 try later", "deferred"), ("554 5.7.1 policy", "failed")])
    def test_recipient_rejection_outcomes(self, smtp_server: SmtpServer, reply: str, outcome: str) -> None:
        smtp_server.handler.recipient_replies["gone@example.com"] = reply

        with mailer_for(smtp_server) as mailer:
            with pytest.raises(DeliveryError) as caught:
                mailer.send(sample_message("gone@example.com"), sender="news@example.com", recipient="gone@example.com")
            mailer.send(sample_message("ok@example.com", "<ok@example.com>"), sender="news@example.com", recipient="ok@example.com")

        assert caught.value.outcome == outcome
        assert caught.value.smtp_code == int(reply[:3])
        assert len(smtp_server.handler.messages) == 1

    def test_unreachable_server_is_unavailable(self) -> None:
        mailer = SmtpMailer(f"smtp://127.0.0.1:{free_port()}", timeout=2, local_hostname="localhost")

        with pytest.raises(MailServerUnavailable):
            mailer.send(sample_message(), sender="news@example.com", recipient="ann@example.com")

    def test_closed_idle_connection_is_reopened(self, smtp_server: SmtpServer) -> None:
        with mailer_for(smtp_server) as mailer:
            mailer.send(sample_message("a@example.com", "<a@example.com>"), sender="news@example.com", recipient="a@example.com")
            assert mailer._connection is not None
            mailer._connection.sock.close()  # the server side hung up while idle
            mailer.send(sample_message("b@example.com", "<b@example.com>"), sender="news@example.com", recipient="b@example.com")

        assert len(smtp_server.handler.messages) == 2

    def test_drop_after_data_is_ambiguous(self, smtp_server: SmtpServer) -> None:
        async def hang_up(server, session, envelope):  # noqa: ANN001, ANN202
            smtp_server.handler.messages.append(envelope.content)
            server.transport.close()
            return "250 never seen"

        smtp_server.handler.handle_DATA = hang_up  # type: ignore[method-assign]

        with mailer_for(smtp_server) as mailer:
            with pytest.raises(DeliveryError) as caught:
                mailer.send(sample_message(), sender="news@example.com", recipient="ann@example.com")

        assert caught.value.outcome == "ambiguous"
        assert len(smtp_server.handler.messages) == 1

    @pytest.mark.parametrize("url", ["http://127.0.0.1:25", "smtp://", "smtp://127.0.0.1:notaport"])
    def test_bad_url_is_a_configuration_error(self, url: str) -> None:
        with pytest.raises(ConfigurationError):
            SmtpMailer(url, timeout=1)

    def test_url_parts(self) -> None:
        mailer = SmtpMailer("smtps://user%40x:p%3Ass@127.0.0.1?starttls=false", timeout=1)

        assert (mailer.port, mailer.username, mailer.password, mailer.implicit_tls) == (465, "user@x", "p:ss", True)
        assert SmtpMailer("smtp://127.0.0.1:587?starttls=true", timeout=1).starttls


class TestFileOutbox:
    def test_writes_one_eml_per_message_id(self, tmp_path: Path) -> None:
        outbox = FileOutbox(tmp_path / "outbox")

        outbox.send(sample_message(message_id="<m1@example.com>"), sender="news@example.com", recipient="ann@example.com")
        outbox.send(sample_message(message_id="<m1@example.com>"), sender="news@example.com", recipient="ann@example.com")
        outbox.send(sample_message(message_id="<m2@example.com>"), sender="news@example.com", recipient="ann@example.com")

        files = sorted(path.name for path in (tmp_path / "outbox").iterdir())
        assert files == ["m1@example.com.eml", "m2@example.com.eml"]
        parsed = email.message_from_bytes((tmp_path / "outbox" / files[0]).read_bytes(), policy=policy.default)
        assert parsed["Message-ID"] == "<m1@example.com>"

    def test_unwritable_folder_is_a_configuration_error(self, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")

        with pytest.raises(ConfigurationError):
            FileOutbox(blocker / "outbox")
