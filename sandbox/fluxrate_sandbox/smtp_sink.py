"""An SMTP server (aiosmtpd) that keeps what it receives, for assertions and for the demo to show."""

from __future__ import annotations

import asyncio
import email
import email.policy
import functools
import warnings
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @functools.cached_property
    def message(self) -> EmailMessage:
        """Parsed when first read: parsing every message as it arrives made the sink a bottleneck in benchmarks."""
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def body(self, subtype: str = "plain") -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        return part.get_content() if part is not None else ""


@dataclass
class _Handler:
    messages: list[ReceivedMessage] = field(default_factory=list)
    fail_next: int = 0
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.fail_next > 0:
            self.fail_next -= 1
            return "451 4.3.0 Temporary failure injected by the sandbox; try again later"
        async with self.arrived:
            self.messages.append(ReceivedMessage(envelope.mail_from or "", list(envelope.rcpt_tos),
                                                 envelope.original_content or b""))
            self.arrived.notify_all()
        return "250 OK"


class SmtpSink:
    """``async with SmtpSink() as sink``: ``sink.host``, ``sink.port``, ``sink.messages``.

    With ``username``/``password`` set, clients must authenticate (AUTH over plain TCP is allowed: loopback only).
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, username: str | None = None, password: str | None = None
    ) -> None:
        self.host = host
        self.port = port
        self._credentials = (username, password) if username else None
        self._handler = _Handler()
        self._server: asyncio.Server | None = None

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self._handler.messages

    def fail_next(self, count: int = 1) -> None:
        """Answer the next ``count`` messages with a temporary failure (451)."""
        self._handler.fail_next = count

    def to(self, address: str) -> list[ReceivedMessage]:
        return [m for m in self.messages if address in m.rcpt_tos]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        async with self._handler.arrived:
            await asyncio.wait_for(self._handler.arrived.wait_for(lambda: len(self.messages) >= count), timeout)
        return self.messages

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self._credentials == (data.login.decode(), data.password.decode())
        return AuthResult(success=ok, handled=False)

    def _protocol(self) -> SMTP:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return self._make_protocol()

    def _make_protocol(self) -> SMTP:
        return SMTP(
            self._handler,
            hostname="sandbox.fluxrate.invalid",
            auth_required=self._credentials is not None,
            auth_require_tls=False,
            authenticator=self._authenticate if self._credentials else None,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, host=self.host, port=self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
