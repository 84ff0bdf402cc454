//! The gateway's pages (login, refusals): plain HTML that works in any browser and with a
//! screen reader. The one exception is the passkey button, which the gateway's static
//! script wakes up (hidden without it; the password form never depends on it).

pub(crate) fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The frame every page shares: one self-contained document (no external resources, so
/// the strict Content-Security-Policy of `Reply::html` holds), a centred card. `title` is
/// escaped here; `css` and `body` are the caller's, already escaped.
pub(crate) fn layout(title: &str, max_width: &str, css: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f4f5f7; margin: 0; display: flex; min-height: 100vh; align-items: center; justify-content: center; }}
main {{ background: #fff; padding: 2rem 2.5rem; border-radius: 8px; box-shadow: 0 2px 12px rgba(0,0,0,.08); width: 100%; max-width: {max_width}; }}
h1 {{ font-size: 1.3rem; margin: 0 0 1.2rem; }}
{css}</style>
</head>
<body>
<main>
<h1>{title}</h1>
{body}</main>
</body>
</html>
"#,
        title = escape(title),
    )
}

/// A provider button on the login page: its label and where it starts.
pub struct ProviderLink {
    pub label: String,
    pub href: String,
}

/// The login page: a button per OpenID Provider, and the password form when `form`.
pub fn login(action: &str, rd: &str, error: Option<&str>, username: &str) -> String {
    login_with(action, rd, error, username, &[], true, None, None)
}

/// `passkey`: the auth prefix, to offer passwordless sign-in with a passkey (the page
/// must then be served with `Reply::html_with_script`).
#[allow(clippy::too_many_arguments)]
pub fn login_with(
    action: &str,
    rd: &str,
    error: Option<&str>,
    username: &str,
    providers: &[ProviderLink],
    form: bool,
    step_up: Option<&str>,
    passkey: Option<&str>,
) -> String {
    let mut error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, escape(e)))
        .unwrap_or_default();
    if step_up.is_some() && error.is_empty() {
        error = "<p class=\"note\" role=\"status\">This page needs a recent sign-in. Please sign in again to continue.</p>".into();
    }
    // A step-up for a route that requires a second factor carries that to the POST.
    let mfa = if step_up == Some("mfa") {
        "<input type=\"hidden\" name=\"mfa\" value=\"1\">\n"
    } else {
        ""
    };
    let css = "label { display: block; font-size: .9rem; margin: .8rem 0 .3rem; }
input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: .55rem .6rem; border: 1px solid #c4c8cf; border-radius: 4px; font-size: 1rem; }
button { margin-top: 1.3rem; width: 100%; padding: .6rem; border: 0; border-radius: 4px; background: #2b5fd9; color: #fff; font-size: 1rem; cursor: pointer; }
.error { color: #a61b1b; background: #fdecec; padding: .5rem .7rem; border-radius: 4px; }
a.provider { display: block; text-align: center; padding: .6rem; border: 1px solid #2b5fd9; border-radius: 4px; color: #2b5fd9; text-decoration: none; }
.passkey button { background: #fff; color: #2b5fd9; border: 1px solid #2b5fd9; }
.or { text-align: center; color: #6b6f76; font-size: .85rem; margin: 1.2rem 0 0; }
";
    let buttons: String = providers
        .iter()
        .map(|p| {
            format!(
                "<p><a class=\"provider\" href=\"{}\">Sign in with {}</a></p>\n",
                escape(&p.href),
                escape(&p.label)
            )
        })
        .collect();
    if !form {
        let css = "a.provider { display: block; text-align: center; padding: .6rem; border-radius: 4px; background: #2b5fd9; color: #fff; text-decoration: none; }\n.error { color: #a61b1b; background: #fdecec; padding: .5rem .7rem; border-radius: 4px; }\n";
        return layout("Sign in", "22rem", css, &format!("{error}\n{buttons}"));
    }
    let body = format!(
        r#"{error}
{buttons}<form method="post" action="{action}">
{mfa}<input type="hidden" name="rd" value="{rd}">
<label for="username">User name</label>
<input type="text" id="username" name="username" value="{username}" autocomplete="username" autocapitalize="none" required autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
{passkey}"#,
        action = escape(action),
        rd = escape(rd),
        username = escape(username),
        passkey = passkey
            .map(|prefix| {
                format!(
                    "<div class=\"passkey\" data-passkey=\"sign-in\" data-options=\"{p}/passkey/login/options\" data-finish=\"{p}/passkey/login\" data-rd=\"{rd}\" hidden>\n\
                     <p class=\"or\">or</p>\n<p class=\"error\" role=\"alert\" hidden></p>\n<button type=\"button\">Sign in with a passkey</button>\n</div>\n\
                     <script src=\"{p}/static/passkey.js\" defer></script>\n",
                    p = escape(prefix),
                    rd = escape(rd),
                )
            })
            .unwrap_or_default(),
    );
    layout("Sign in", "22rem", css, &body)
}

/// A short page for a refused browser request: what happened, the machine code that the
/// JSON answer carries too, and the request id to quote to an operator.
pub fn refusal(title: &str, message: &str, code: &str, request_id: &str) -> String {
    let body = format!(
        "<p>{}</p>\n<p>Error <code>{}</code>, request <code>{}</code>.</p>\n",
        escape(message),
        escape(code),
        escape(request_id),
    );
    let css = "code { background: #f0f1f3; padding: .1rem .3rem; border-radius: 3px; }\n";
    layout(title, "30rem", css, &body)
}

/// A failed OpenID sign-in: what happened, the code, the request id, and a way back.
pub fn oidc_error(title: &str, message: &str, code: &str, request_id: &str, again: &str) -> String {
    let body = format!(
        "<p>{}</p>\n<p>Error <code>{}</code>, request <code>{}</code>.</p>\n<p><a href=\"{}\">Start again</a></p>\n",
        escape(message),
        escape(code),
        escape(request_id),
        escape(again),
    );
    let css = "code { background: #f0f1f3; padding: .1rem .3rem; border-radius: 3px; }\n";
    layout(title, "30rem", css, &body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_escaped() {
        let p = super::login("/.auth/login", "/\"><script>", Some("<b>"), "a\"b");
        assert!(!p.contains("<script>"));
        assert!(p.contains("&quot;&gt;&lt;script&gt;"));
        assert!(p.contains("&lt;b&gt;"));
        assert!(p.contains("a&quot;b"));
        let r = super::refusal("Bad <request>", "a & b", "x\"y", "id<1>");
        assert!(r.contains("<title>Bad &lt;request&gt;</title>") && r.contains("a &amp; b"));
        assert!(r.contains("x&quot;y") && r.contains("id&lt;1&gt;"));
    }
}
