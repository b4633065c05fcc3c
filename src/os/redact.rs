//! Secrets out of process command lines before anything keeps them.
//!
//! A client started as `worker.py amqp://nova:s3cret@rabbit/` or
//! `app --password s3cret` has its password in `/proc/PID/cmdline`, which
//! live mode reads to name a connection's process. The command line is
//! redacted here, where it is read, so no report, event, metric or screen can
//! print the secret. What is replaced becomes [`MASK`]:
//! - the password of a URL's user info (`scheme://user:PASSWORD@host`; a user
//!   info without a colon is a bare token and is masked whole);
//! - the value of an option whose name says it is secret
//!   (`--password=X`, `--password X`, `--db-token X`, `-pX` is not guessed);
//! - the value of a `KEY=value` pair (an environment-style argument, or a
//!   pair inside a connection string such as `host=db password=X`) whose key
//!   says it is secret.
//!
//! A key "says it is secret" when it contains one of [`SECRET_WORDS`],
//! compared without case.

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Words that make an option or key name a secret's.
pub const SECRET_WORDS: [&str; 9] = [
    "pass",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "credential",
    "private_key",
];

/// True when `name` (an option or key name) says its value is secret.
fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// The command line `args` joined by spaces, with secrets masked.
#[must_use]
pub fn cmdline(args: &[String]) -> String {
    let mut out: Vec<String> = Vec::with_capacity(args.len());
    let mut mask_next = false;
    for arg in args {
        if mask_next {
            mask_next = false;
            if !arg.starts_with('-') {
                out.push(MASK.to_owned());
                continue;
            }
        }
        if let Some(name) = arg.strip_prefix('-') {
            let name = name.trim_start_matches('-');
            if !name.contains('=') && !name.is_empty() && is_secret_name(name) {
                // `--password VALUE`: the next argument is the secret.
                mask_next = true;
                out.push(arg.clone());
                continue;
            }
        }
        out.push(text(arg));
    }
    out.join(" ")
}

/// `s` with URL passwords and secret `key=value` values masked.
#[must_use]
pub fn text(s: &str) -> String {
    mask_pairs(&mask_userinfo(s))
}

/// Masks the password of every `scheme://user:password@` in `s`.
fn mask_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#' or whitespace.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..=colon]);
                        out.push_str(MASK);
                    }
                    None => out.push_str(MASK),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Masks the value of every `key=value` (or `key: value` is not guessed)
/// whose key names a secret; values end at whitespace, `&`, `;` or `,`.
fn mask_pairs(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let (before, after) = rest.split_at(eq);
        // The key is the run of name characters just before '='.
        let key_start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let key = &before[key_start..];
        out.push_str(before);
        out.push('=');
        let after = &after[1..];
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '&' | ';' | ','))
            .unwrap_or(after.len());
        if !key.is_empty() && is_secret_name(key) && end > 0 && !after[..end].starts_with(MASK) {
            out.push_str(MASK);
        } else {
            out.push_str(&after[..end]);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            cmdline(&args(
                "python3 worker.py amqp://nova:s3cret@rabbit:5672/vhost"
            )),
            "python3 worker.py amqp://nova:***@rabbit:5672/vhost"
        );
        assert_eq!(
            text("--url=amqps://tok3n@host/ and http://host/path?x=1"),
            "--url=amqps://***@host/ and http://host/path?x=1"
        );
        // Several URLs, one without user info.
        assert_eq!(
            text("a://u:p@h b://h c://v:q@i"),
            "a://u:***@h b://h c://v:***@i"
        );
    }

    #[test]
    fn secret_options_and_pairs_are_masked() {
        assert_eq!(
            cmdline(&args("app --password s3cret --port 5672")),
            "app --password *** --port 5672"
        );
        assert_eq!(
            cmdline(&args("app --db-password=s3cret -v")),
            "app --db-password=*** -v"
        );
        assert_eq!(
            cmdline(&args(
                "env RABBIT_PASSWORD=s3cret API_TOKEN=abc USER=nova cmd"
            )),
            "env RABBIT_PASSWORD=*** API_TOKEN=*** USER=nova cmd"
        );
        assert_eq!(
            text("host=db password=s3cret;user=x&secret_key=k"),
            "host=db password=***;user=x&secret_key=***"
        );
        // An option naming a secret followed by another option masks nothing.
        assert_eq!(
            cmdline(&args("app --password --verbose")),
            "app --password --verbose"
        );
    }

    #[test]
    fn ordinary_command_lines_are_unchanged() {
        for line in [
            "/usr/sbin/apache2 -k start",
            "python3 -m nova.api --config-file=/etc/nova/nova.conf",
            "beam.smp -W w -- -root /usr/lib/erlang -progname erl",
            "a=b c==d =e f=",
        ] {
            assert_eq!(cmdline(&args(line)), line);
        }
    }

    #[test]
    fn never_panics_on_odd_text() {
        for s in [
            "://@",
            "=",
            "==",
            "a://",
            "x://:@",
            "pass=",
            "é=ü://ö:ä@ß",
            "--pass",
        ] {
            let _ = text(s);
            let _ = cmdline(&args(s));
        }
    }

    proptest::proptest! {
        /// Any text: no panic, and a masked secret never survives.
        #[test]
        fn any_text_is_safe(prefix in "\\PC{0,20}", secret in "[a-zA-Z0-9]{6,12}") {
            let line = format!("{prefix} amqp://u:{secret}@h --password {secret} X_TOKEN={secret}");
            let out = cmdline(&line.split(' ').map(str::to_owned).collect::<Vec<_>>());
            let leaks = [
                format!(":{secret}@"),
                format!("--password {secret}"),
                format!("TOKEN={secret}"),
            ];
            for leak in &leaks {
                proptest::prop_assert!(!out.contains(leak.as_str()), "{} in {}", leak, out);
            }
        }
    }
}
