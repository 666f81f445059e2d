"""A real SMTP server for mamori-notify's tests (aiosmtpd).

Usage: smtp_server.py MODE [CERT KEY]
  MODE plain    : no auth, no TLS
  MODE auth     : AUTH PLAIN/LOGIN required (user "mamori", password "s3cret"), over plain text
  MODE starttls : STARTTLS required with CERT/KEY, then AUTH required

Prints "PORT <n>" when ready, then one JSON line per received message.
"""
import json
import logging
import socket
import ssl
import sys
import warnings

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
except ImportError:
    print("NO_AIOSMTPD", flush=True)
    sys.exit(0)

import email
from email import policy


class Handler:
    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(raw, policy=policy.default)
        compat = email.message_from_bytes(raw)
        print(json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(parsed["From"]),
            "to": str(parsed["To"]),
            "subject": str(parsed["Subject"]),
            "subject_raw": compat["Subject"],
            "content_type": parsed.get_content_type(),
            "charset": parsed.get_content_charset(),
            "body": (next((p.get_content() for p in parsed.walk()
                           if p.get_content_type() == "text/plain"), "")
                     if parsed.is_multipart() else parsed.get_content()),
            "attachments": ([p.get_filename() for p in parsed.iter_attachments()]
                            if parsed.is_multipart() else []),
            "authenticated": bool(session.authenticated),
            "tls": session.ssl is not None,
            "header_names": list(parsed.keys()),
        }), flush=True)
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == b"mamori" and auth_data.password == b"s3cret")
    return AuthResult(success=ok)


def main():
    # Expected failures (a refused certificate, a wrong password) are what the tests provoke.
    warnings.filterwarnings("ignore")
    logging.getLogger("mail.log").setLevel(logging.CRITICAL + 1)
    mode = sys.argv[1]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    kwargs = {}
    if mode in ("auth", "starttls"):
        kwargs.update(authenticator=authenticator, auth_required=True,
                      auth_require_tls=(mode == "starttls"))
    if mode == "starttls":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        kwargs.update(tls_context=ctx, require_starttls=True)
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    print(f"PORT {port}", flush=True)
    try:
        # Ends when the test closes our stdin (or kills us).
        sys.stdin.read()
    finally:
        controller.stop()


main()
