//! The pages of second factors: the second step of a login (a code, or enrollment with a
//! QR code), the recovery codes shown once, and the account page. Plain HTML; the pages
//! that offer a passkey load the gateway's one static script (`passkey_flow::SCRIPT`) and
//! carry what it needs in `data-` attributes — no inline script, no inline handlers.

use crate::auth::page::{escape, layout};

pub const CSS: &str = "label { display: block; font-size: .9rem; margin: .8rem 0 .3rem; }
input[type=text] { width: 100%; box-sizing: border-box; padding: .55rem .6rem; border: 1px solid #c4c8cf; border-radius: 4px; font-size: 1rem; }
button { margin-top: 1rem; padding: .55rem 1rem; border: 0; border-radius: 4px; background: #2b5fd9; color: #fff; font-size: 1rem; cursor: pointer; }
button.quiet { background: #fff; color: #2b5fd9; border: 1px solid #2b5fd9; margin-top: .3rem; }
.error { color: #a61b1b; background: #fdecec; padding: .5rem .7rem; border-radius: 4px; }
.note { color: #44474d; font-size: .9rem; }
code, .codes li { font-family: ui-monospace, monospace; background: #f0f1f3; padding: .1rem .3rem; border-radius: 3px; overflow-wrap: anywhere; }
.codes { columns: 2; padding-left: 1.2rem; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .4rem .3rem; border-bottom: 1px solid #e3e5e8; vertical-align: top; }
h2 { font-size: 1.05rem; margin: 1.6rem 0 .6rem; }
h3 { font-size: .95rem; margin: 1.2rem 0 .4rem; }
form.inline { display: inline; }
.qr svg { display: block; margin: .5rem auto; }
.or { text-align: center; color: #6b6f76; font-size: .85rem; margin: 1.2rem 0 0; }
";

fn error_html(error: Option<&str>) -> String {
    error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(e)))
        .unwrap_or_default()
}

/// Scanning instructions, the QR code and the URI as text, for an authenticator app.
pub fn enroll_block(svg: &str, uri: &str) -> String {
    format!(
        "<p>Scan this code with an authenticator app (or enter the key by hand), then type \
         the six-digit code it shows.</p>\n<div class=\"qr\" role=\"img\" aria-label=\"QR code of the enrollment URI\">{svg}</div>\n\
         <p class=\"note\">Or add this URI by hand: <code>{}</code></p>\n",
        escape(uri)
    )
}

/// A passkey button that the script wakes up (hidden until then: without the script, or
/// in a browser without WebAuthn, it would do nothing). `kind` is `register`,
/// `second-step` or `sign-in`; `rd` is where a sign-in goes afterwards.
pub fn passkey_button(prefix: &str, kind: &str, label: &str, rd: &str) -> String {
    let (options, finish) = if kind == "register" {
        ("passkey/register/options", "passkey/register")
    } else {
        ("passkey/login/options", "passkey/login")
    };
    let name = if kind == "register" {
        "<label for=\"passkey-name\">Name of the new passkey (optional)</label>\n\
         <input type=\"text\" id=\"passkey-name\" maxlength=\"64\" autocomplete=\"off\" placeholder=\"e.g. laptop\">\n"
    } else {
        ""
    };
    format!(
        "<div class=\"passkey\" data-passkey=\"{kind}\" data-options=\"{p}/{options}\" data-finish=\"{p}/{finish}\" data-rd=\"{rd}\" hidden>\n\
         <p class=\"error\" role=\"alert\" hidden></p>\n{name}<button type=\"button\">{label}</button>\n</div>\n",
        kind = escape(kind),
        p = escape(prefix),
        rd = escape(rd),
        label = escape(label),
    )
}

/// The tag that loads the passkey script (allowed by `Reply::html_with_script` only).
pub fn passkey_script(prefix: &str) -> String {
    format!(
        "<script src=\"{}/static/passkey.js\" defer></script>\n",
        escape(prefix)
    )
}

/// The second step of a login: a TOTP code (or a recovery code), or enrollment first;
/// and "Use a passkey" when `passkey` (the auth prefix) is given. `code` shows the form.
pub fn second_step(
    action: &str,
    enroll: Option<String>,
    error: Option<&str>,
    code: bool,
    passkey: Option<&str>,
) -> String {
    let intro = match (&enroll, code, passkey.is_some()) {
        (Some(block), _, _) => format!(
            "<p>Your account needs a second factor. Set one up to finish signing in.</p>\n{block}"
        ),
        (None, true, false) => {
            "<p>Enter the six-digit code from your authenticator app, or one of your \
                 recovery codes.</p>\n"
                .to_string()
        }
        (None, true, true) => "<p>Use your passkey, or enter the six-digit code from your \
                 authenticator app (or one of your recovery codes).</p>\n"
            .to_string(),
        (None, false, _) => "<p>Use your passkey to finish signing in.</p>\n".to_string(),
    };
    let mut body = format!("{}{intro}", error_html(error));
    if let Some(prefix) = passkey {
        body.push_str(&passkey_button(prefix, "second-step", "Use a passkey", ""));
    }
    if code {
        if passkey.is_some() {
            body.push_str("<p class=\"or\">or</p>\n");
        }
        body.push_str(&format!(
            "<form method=\"post\" action=\"{}\">\n<label for=\"code\">Code</label>\n\
             <input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required{}>\n\
             <button type=\"submit\">Continue</button>\n</form>\n",
            escape(action),
            if passkey.is_some() { "" } else { " autofocus" }
        ));
    }
    if let Some(prefix) = passkey {
        body.push_str(&passkey_script(prefix));
    }
    layout("Second step", "26rem", CSS, &body)
}

/// Recovery codes, shown once.
pub fn recovery_codes(codes: &[String], next: &str) -> String {
    let items: String = codes
        .iter()
        .map(|c| format!("<li>{}</li>", escape(c)))
        .collect();
    let body = format!(
        "<p>Your authenticator app is set up. Keep these recovery codes somewhere safe: \
         each one signs you in once if you lose the app. They are not shown again.</p>\n\
         <ul class=\"codes\">{items}</ul>\n<p><a href=\"{}\">Continue</a></p>\n",
        escape(next)
    );
    layout("Recovery codes", "28rem", CSS, &body)
}

/// A short page with a message and a link.
pub fn message(title: &str, text: &str, link: &str, link_text: &str) -> String {
    let body = format!(
        "<p>{}</p>\n<p><a href=\"{}\">{}</a></p>\n",
        escape(text),
        escape(link),
        escape(link_text)
    );
    layout(title, "26rem", CSS, &body)
}
