"""The notify module: e-mail to a real SMTP server (aiosmtpd, STARTTLS and login),
webhooks to a real HTTP server."""

from __future__ import annotations

import uuid
from email import message_from_bytes
from typing import Any

from tests.modules.conftest import SmtpServer
from tests.servers import free_port


def _mail(**params: Any) -> dict[str, Any]:
    return {"name": "mail", "module": "notify", "method": "email",
            "params": {"to_addrs": "ops@example.org, dev@example.org", "subject": "done",
                       "body": "<b>all good</b>", "body_type": "html", **params}}


def test_email_over_starttls_with_login(smtp_server: SmtpServer, run_embedded: Any) -> None:
    subject = f"report {uuid.uuid4().hex[:6]}"
    dead = f"127.0.0.1:{free_port()}"
    conn = {"type": "smtp", "hosts": [dead, f"localhost:{smtp_server.port}"],
            "login": smtp_server.user, "credentials": {"password": "smtp_pw"},
            "options": {"security": "starttls", "from_addr": "chordflow@example.org",
                        "tls_ca_file": str(smtp_server.cert)},
            "timeout": 5, "retry_count": 1}
    step = _mail(subject=subject, bcc=["audit@example.org"])
    step["connection"] = "mail"
    report = run_embedded({"name": "mail", "steps": [step]}, {"mail": conn},
                          secrets={"smtp_pw": smtp_server.password})
    assert report["status"] == "succeeded", report
    out = report["steps"]["mail"]["outputs"]
    assert out["connected_node"] == f"localhost:{smtp_server.port}"
    assert out["recipients"] == ["ops@example.org", "dev@example.org", "audit@example.org"]
    [envelope] = [e for e in smtp_server.messages
                  if message_from_bytes(e.content)["Subject"] == subject]
    assert envelope.mail_from == "chordflow@example.org"
    assert envelope.rcpt_tos == out["recipients"]
    message = message_from_bytes(envelope.content)
    assert message.get_content_type() == "text/html"
    assert "Bcc" not in message


def test_a_wrong_password_fails_without_showing_it(smtp_server: SmtpServer,
                                                   run_embedded: Any) -> None:
    conn = {"type": "smtp", "hosts": [f"localhost:{smtp_server.port}"],
            "login": smtp_server.user, "credentials": {"password": "smtp_pw"},
            "options": {"security": "starttls", "tls_ca_file": str(smtp_server.cert)},
            "retry_count": 1, "timeout": 2}
    step = {**_mail(from_addr="a@example.org"), "connection": "mail"}
    wrong = "not-the-pw-7f3e"
    report = run_embedded({"name": "mail-bad", "steps": [step]}, {"mail": conn},
                          secrets={"smtp_pw": wrong})
    assert report["status"] == "failed"
    # smtplib tries PLAIN (refused), then LOGIN, which aiosmtpd leaves unanswered: the
    # connection fails at login either way, and nothing is sent.
    assert "connection 'mail': no host answered" in report["steps"]["mail"]["error"]
    assert wrong not in str(report)
    assert not [e for e in smtp_server.messages if e.mail_from == "a@example.org"]


def test_an_unchecked_certificate_is_refused(smtp_server: SmtpServer,
                                             run_embedded: Any) -> None:
    # The platform's way (smtp_host/use_tls params): the self-signed certificate is not
    # trusted, so the connection fails rather than sending in the clear.
    step = _mail(from_addr="a@example.org", smtp_host="localhost",
                 smtp_port=smtp_server.port, use_tls=True)
    report = run_embedded({"name": "mail-tls", "steps": [step]})
    assert report["status"] == "failed"
    assert "CERTIFICATE_VERIFY_FAILED" in report["steps"]["mail"]["error"]


def test_webhook_posts_json(http_server: str, run_embedded: Any) -> None:
    doc = {"name": "hook", "steps": [
        {"name": "plain", "module": "notify", "method": "webhook",
         "params": {"url": f"{http_server}/echo", "body": {"run": "${run.id}"},
                    "headers": {"X-Test": "1"}}},
        {"name": "named", "module": "notify", "method": "webhook", "connection": "hooks",
         "params": {"url": "/echo", "body": "text", "method": "PUT"}}]}
    conn = {"type": "http", "hosts": [f"127.0.0.1:{free_port()}", http_server],
            "credentials": {"token": "hook_token"}, "timeout": 2, "retry_count": 1}
    report = run_embedded(doc, {"hooks": conn}, secrets={"hook_token": "tok-5521-abc"})
    assert report["status"] == "succeeded", report
    plain = report["steps"]["plain"]["outputs"]["json"]
    assert plain["method"] == "POST" and plain["body"] == {"run": report["run_id"]}
    assert plain["headers"]["X-Test"] == "1"
    named = report["steps"]["named"]["outputs"]
    assert named["json"]["method"] == "PUT" and named["json"]["body"] == "text"
    assert named["json"]["headers"]["Authorization"] == "Bearer ***"  # masked in records
    assert named["connected_node"] == http_server.removeprefix("http://")
