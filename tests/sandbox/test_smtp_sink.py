from email.message import EmailMessage

import aiosmtplib
import pytest

from fluxrate_sandbox.smtp_sink import SmtpSink


def _message(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "billing@fluxrate.invalid"
    msg["To"] = to
    msg["Subject"] = "Invoice inv-1"
    msg.set_content("Pay here: https://buy.stripe.com/test_x")
    msg.add_alternative("<p>Pay <a href='https://buy.stripe.com/test_x'>here</a></p>", subtype="html")
    return msg


async def test_sink_keeps_text_and_html_parts() -> None:
    async with SmtpSink() as sink:
        await aiosmtplib.send(_message("a@b.example"), hostname=sink.host, port=sink.port, start_tls=False)
        (received,) = await sink.wait_for(1)
    assert received.rcpt_tos == ["a@b.example"]
    assert received.subject == "Invoice inv-1"
    assert "https://buy.stripe.com/test_x" in received.body("plain")
    assert "<a href=" in received.body("html")


async def test_sink_requires_credentials_when_configured() -> None:
    async with SmtpSink(username="mailer", password="s3cret-pass") as sink:
        with pytest.raises(aiosmtplib.SMTPException):
            await aiosmtplib.send(_message("a@b.example"), hostname=sink.host, port=sink.port, start_tls=False)
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await aiosmtplib.send(_message("a@b.example"), hostname=sink.host, port=sink.port, start_tls=False,
                                  username="mailer", password="wrong")
        await aiosmtplib.send(_message("a@b.example"), hostname=sink.host, port=sink.port, start_tls=False,
                              username="mailer", password="s3cret-pass")
        assert len(await sink.wait_for(1)) == 1


async def test_injected_failure_is_temporary() -> None:
    async with SmtpSink() as sink:
        sink.fail_next(1)
        with pytest.raises(aiosmtplib.SMTPResponseException) as info:
            await aiosmtplib.send(_message("a@b.example"), hostname=sink.host, port=sink.port, start_tls=False)
        assert info.value.code == 451
        assert sink.messages == []
        await aiosmtplib.send(_message("a@b.example"), hostname=sink.host, port=sink.port, start_tls=False)
        assert len(sink.messages) == 1
