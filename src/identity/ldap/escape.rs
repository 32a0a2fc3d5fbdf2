//! Escaping of user input for LDAP filters (RFC 4515) and DNs (RFC 4514).
//!
//! vedauth never builds a DN from what a user typed: it binds with the DN the directory returned
//! for the search. [`dn_value`] is here for configuration and tools that do.

use std::fmt::Write;

/// A string as an assertion value in a search filter (RFC 4515 §3): `*`, `(`, `)`, `\` and NUL
/// become `\2a`, `\28`, `\29`, `\5c`, `\00`. Everything else, UTF-8 included, stays as it is.
pub fn filter_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\0' => {
                let _ = write!(out, "\\{:02x}", c as u32);
            }
            _ => out.push(c),
        }
    }
    out
}

/// Raw bytes (such as an objectGUID) as an assertion value: every byte as `\xx`.
pub fn filter_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for b in bytes {
        let _ = write!(out, "\\{b:02x}");
    }
    out
}

/// A string as an attribute value in a DN (RFC 4514 §2.4): the special characters get a
/// backslash, as do a leading `#` or space and a trailing space; NUL becomes `\00`.
pub fn dn_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push_str("\\00"),
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_lose_their_special_meaning() {
        assert_eq!(filter_value("alice"), "alice");
        assert_eq!(filter_value("*"), "\\2a");
        assert_eq!(filter_value("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(filter_value("a\\b"), "a\\5cb");
        assert_eq!(filter_value("nul\0"), "nul\\00");
        assert_eq!(filter_value("Jöhn Dœ"), "Jöhn Dœ");
        // The escaped value parses as one equality assertion, never as more filter.
        let f = format!("(uid={})", filter_value("x)(|(uid=*"));
        assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
    }

    #[test]
    fn bytes_are_all_escaped() {
        assert_eq!(filter_bytes(&[0x00, 0x2a, 0xff]), "\\00\\2a\\ff");
        assert_eq!(filter_bytes(&[]), "");
    }

    #[test]
    fn dn_values_are_escaped() {
        assert_eq!(dn_value("alice"), "alice");
        assert_eq!(dn_value("Smith, John"), "Smith\\, John");
        assert_eq!(dn_value("a+b=c"), "a\\+b\\=c");
        assert_eq!(dn_value("#tag"), "\\#tag");
        assert_eq!(dn_value("mid#dle"), "mid#dle");
        assert_eq!(dn_value(" padded "), "\\ padded\\ ");
        assert_eq!(dn_value(" "), "\\ ");
        assert_eq!(dn_value("<x>;\"q\"\\"), "\\<x\\>\\;\\\"q\\\"\\\\");
        assert_eq!(dn_value("nul\0"), "nul\\00");
        assert_eq!(dn_value(""), "");
    }
}
