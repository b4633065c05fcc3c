//! The one sanitiser for strings that came from the wire or from /proc
//! (client names and properties, close reply texts, violations, process
//! names and command lines) before they are printed.
//!
//! A client controls its `connection_name`; printed raw, an ESC sequence
//! clears the operator's screen or sets the terminal title, a newline forges
//! report lines, and in Markdown a `|` or `#` breaks the table or injects a
//! heading. Each output escapes in its own way:
//! - [`text`] (text report, summary, live text events, TUI): control
//!   characters (C0, DEL, C1), and the Unicode bidirectional overrides that
//!   reorder what a reader sees, are shown escaped (`\n`, `\e`, `\x07`,
//!   `\u{202e}`); a backslash is doubled so an escape cannot be forged;
//! - [`markdown`]: [`text`] first, then Markdown's special characters are
//!   (`| * _ ` [ ] # \`) backslash-escaped and `< > &` become entities, so a
//!   value stays inside its table cell as plain text (a link needs `[`);
//! - HTML escapes `& < > " '` itself (`report::html`), after [`text`].
//!
//! JSON needs nothing: serde_json escapes control characters.

use std::borrow::Cow;

/// True for a character that must not reach a terminal as is.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// `s` with control characters and bidirectional overrides escaped, and
/// backslashes doubled. Borrowed when there was nothing to escape.
#[must_use]
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c) || c == '\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            c if is_unsafe(c) && u32::from(c) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:04x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `s` safe inside a Markdown table cell or paragraph: [`text`], then
/// Markdown's special characters escaped and angle brackets as entities.
#[must_use]
pub fn markdown(s: &str) -> String {
    let t = text(s);
    let mut out = String::with_capacity(t.len() + 8);
    for c in t.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '|' | '*' | '_' | '`' | '[' | ']' | '#' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_shown_not_sent() {
        assert_eq!(
            text("a\u{1b}[2J\u{1b}]0;owned\u{7}b"),
            "a\\e[2J\\e]0;owned\\x07b"
        );
        assert_eq!(
            text("x\nhbscope: 0 flagged, all healthy"),
            "x\\nhbscope: 0 flagged, all healthy"
        );
        assert_eq!(text("\u{9b}31m\u{7f}"), "\\x9b31m\\x7f");
        assert_eq!(text("abc\u{202e}fed"), "abc\\u{202e}fed");
        // A literal backslash cannot pose as an escape.
        assert_eq!(text("\\e[2J"), "\\\\e[2J");
    }

    #[test]
    fn plain_names_are_borrowed_unchanged() {
        let name = "nova_api_sim.py:29453:61b28d9a-5c94-41a2 — über";
        assert!(matches!(text(name), Cow::Borrowed(_)));
        assert_eq!(text(name), name);
    }

    #[test]
    fn markdown_stays_in_its_cell() {
        let m = markdown("a|b\n# H [x](http://e) <script>");
        assert!(!m.contains('\n'));
        assert!(!m.contains("<script>"));
        assert_eq!(m.matches('|').count(), m.matches("\\|").count());
        assert_eq!(m, "a\\|b\\\\n\\# H \\[x\\](http://e) &lt;script&gt;");
    }

    proptest::proptest! {
        /// Whatever comes in, nothing a terminal acts on goes out.
        #[test]
        fn no_control_character_survives(s in "\\PC{0,20}[\\x00-\\x1f\\x7f-\\x9f]{0,5}\\PC{0,10}") {
            let t = text(&s);
            proptest::prop_assert!(!t.chars().any(is_unsafe), "{:?}", t);
            let m = markdown(&s);
            proptest::prop_assert!(!m.chars().any(is_unsafe) && !m.contains('<'), "{:?}", m);
        }
    }
}
