//! Mail through SMTP (lettre, rustls with ring).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use crate::config::{Secret, SmtpSecurity};
use crate::message::{self, Notification, Style};
use crate::Target;

#[derive(Clone)]
pub(crate) struct SmtpChannel {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) security: SmtpSecurity,
    pub(crate) credentials: Option<(String, Secret)>,
    pub(crate) from: Mailbox,
    pub(crate) roots: Option<Certificate>,
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for SmtpChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpChannel")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.credentials.as_ref().map(|c| &c.0))
            .field("password", &self.credentials.as_ref().map(|c| &c.1))
            .field("from", &self.from.to_string())
            .field("private_ca", &self.roots.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Builds the message: plain text UTF-8, subject encoded by lettre (RFC 2047 when not ASCII).
pub(crate) fn build_message(
    from: &Mailbox,
    to: &Mailbox,
    n: &Notification,
    target: &Target,
) -> Result<Message, String> {
    Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(message::subject(n, target.language))
        .header(ContentType::TEXT_PLAIN)
        .body(message::body(
            n,
            target.language,
            target.offset,
            Style::Plain,
        ))
        .map_err(|e| format!("building the message: {e}"))
}

/// A file attached to a mail (a report).
#[derive(Debug, Clone)]
pub struct Attachment {
    pub file_name: String,
    /// `application/pdf`, `text/html; charset=utf-8`.
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// A plain-text mail with files attached; the subject and body are ours, never log content.
pub(crate) fn build_with_attachments(
    from: &Mailbox,
    to: &Mailbox,
    subject: &str,
    body: &str,
    files: &[&Attachment],
) -> Result<Message, String> {
    use lettre::message::{MultiPart, SinglePart};
    let mut parts = MultiPart::mixed().singlepart(
        SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned()),
    );
    for f in files {
        let ct = ContentType::parse(&f.content_type)
            .map_err(|e| format!("content type {}: {e}", f.content_type))?;
        parts = parts.singlepart(
            lettre::message::Attachment::new(crate::escape::mail_header(&f.file_name))
                .body(f.bytes.clone(), ct),
        );
    }
    Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(crate::escape::mail_header(subject))
        .multipart(parts)
        .map_err(|e| format!("building the message: {e}"))
}

impl SmtpChannel {
    pub(crate) fn send_message(&self, msg: &Message) -> Result<(), String> {
        let transport = self.transport()?;
        transport.send(msg).map(|_| ()).map_err(|e| {
            let text = e.to_string();
            match &self.credentials {
                Some((_, p)) if !p.expose().is_empty() => text.replace(p.expose(), "<redacted>"),
                _ => text,
            }
        })
    }

    fn transport(&self) -> Result<SmtpTransport, String> {
        let tls = match self.security {
            SmtpSecurity::None => Tls::None,
            SmtpSecurity::Starttls | SmtpSecurity::Tls => {
                let mut b = TlsParameters::builder(self.host.clone());
                if let Some(roots) = &self.roots {
                    b = b.add_root_certificate(roots.clone());
                }
                let params = b.build().map_err(|e| format!("TLS setup: {e}"))?;
                if self.security == SmtpSecurity::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = SmtpTransport::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(self.timeout));
        if let Some((user, pass)) = &self.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), pass.expose().to_owned()));
        }
        Ok(builder.build())
    }

    pub(crate) fn send(&self, n: &Notification, target: &Target) -> Result<(), String> {
        let to = target.email.as_ref().ok_or("the contact has no email")?;
        let msg = build_message(&self.from, to, n, target)?;
        let transport = self.transport()?;
        transport.send(&msg).map(|_| ()).map_err(|e| {
            let text = e.to_string();
            match &self.credentials {
                // lettre does not echo credentials, but never let one through by accident.
                Some((_, p)) if !p.expose().is_empty() => text.replace(p.expose(), "<redacted>"),
                _ => text,
            }
        })
    }
}
