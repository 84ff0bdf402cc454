//! The pages of second factors: the second step of a login (a code, or enrollment with a
//! QR code), the recovery codes shown once, and the account page. Plain HTML, no script.

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
form.inline { display: inline; }
.qr svg { display: block; margin: .5rem auto; }
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

/// The second step of a login: a TOTP code (or a recovery code), or enrollment first.
pub fn second_step(action: &str, enroll: Option<String>, error: Option<&str>) -> String {
    let intro = match &enroll {
        Some(block) => format!(
            "<p>Your account needs a second factor. Set one up to finish signing in.</p>\n{block}"
        ),
        None => "<p>Enter the six-digit code from your authenticator app, or one of your \
                 recovery codes.</p>\n"
            .to_string(),
    };
    let body = format!(
        "{}{intro}<form method=\"post\" action=\"{}\">\n<label for=\"code\">Code</label>\n\
         <input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required autofocus>\n\
         <button type=\"submit\">Continue</button>\n</form>\n",
        error_html(error),
        escape(action)
    );
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
