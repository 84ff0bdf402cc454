//! Responses the gateway writes itself (errors, redirects, the login page, JSON).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// A complete response, built before it is written.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![
                ("content-type".into(), content_type.to_string()),
                // Gateway answers are about one person's session or one request; never cache.
                ("cache-control".into(), "no-store".to_string()),
                ("x-content-type-options".into(), "nosniff".to_string()),
            ],
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status, "application/json", value.to_string())
    }

    /// `{"error": code, "message": ...}`
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(
            status,
            &serde_json::json!({ "error": code, "message": message }),
        )
    }

    pub fn html(status: u16, body: String) -> Self {
        Self::page(
            status,
            body,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
    }

    /// A page that runs the gateway's own script (the passkey pages): scripts only from
    /// this origin, never inline, and `fetch` only back to it.
    pub fn html_with_script(status: u16, body: String) -> Self {
        Self::page(
            status,
            body,
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
    }

    fn page(status: u16, body: String, csp: &str) -> Self {
        Self::new(status, "text/html; charset=utf-8", body)
            .header("content-security-policy", csp)
            .header("x-frame-options", "DENY")
            // Not `no-referrer`: under it browsers send `Origin: null` with the login form,
            // which the CSRF check must refuse. `same-origin` still leaks nothing offsite.
            .header("referrer-policy", "same-origin")
    }

    /// A static file of the gateway's own (the passkey script): the same for everyone,
    /// so caches may keep it for a day.
    pub fn asset(content_type: &str, body: &'static str) -> Self {
        let mut r = Self::new(200, content_type, Bytes::from_static(body.as_bytes()));
        for (k, v) in &mut r.headers {
            if k == "cache-control" {
                *v = "public, max-age=86400".into();
            }
        }
        r
    }

    pub fn redirect(status: u16, location: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", Bytes::new()).header("location", location)
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Write the reply. `close` ends the connection afterwards (after framing errors the
    /// rest of the byte stream cannot be trusted).
    pub async fn send(self, session: &mut Session, close: bool) -> pingora::Result<()> {
        let mut h = ResponseHeader::build(self.status, Some(self.headers.len() + 2))?;
        for (k, v) in self.headers {
            h.append_header(k, v)?;
        }
        h.insert_header("content-length", self.body.len().to_string())?;
        if close {
            session.set_keepalive(None);
            h.insert_header("connection", "close")?;
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(h), head_only || self.body.is_empty())
            .await?;
        if !head_only && !self.body.is_empty() {
            session.write_response_body(Some(self.body), true).await?;
        }
        Ok(())
    }
}
