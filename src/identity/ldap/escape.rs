//! Escaping of values in LDAP search filters (RFC 4515 §3).
//!
//! Strings go through `ldap3::ldap_escape` (`*`, `(`, `)`, `\` and NUL become `\2a`, `\28`,
//! `\29`, `\5c`, `\00`; everything else, UTF-8 included, stays). vedauth never builds a DN from
//! what a user typed: it binds with the DN the directory returned for the search.

/// Raw bytes (such as an objectGUID) as an assertion value: every byte as `\xx`.
pub fn filter_bytes(bytes: &[u8]) -> String {
    let digits = hex::encode(bytes);
    let mut out = String::with_capacity(bytes.len() * 3);
    for pair in digits.as_bytes().chunks(2) {
        out.push('\\');
        out.extend(pair.iter().map(|&b| char::from(b)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::ldap_escape;

    /// The bytes the hand-written escaper produced before `ldap_escape` replaced it.
    #[test]
    fn filter_values_lose_their_special_meaning() {
        assert_eq!(ldap_escape("alice"), "alice");
        assert_eq!(ldap_escape("*"), "\\2a");
        assert_eq!(ldap_escape("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(ldap_escape("a\\b"), "a\\5cb");
        assert_eq!(ldap_escape("nul\0"), "nul\\00");
        assert_eq!(ldap_escape("Jöhn Dœ"), "Jöhn Dœ");
        // The escaped value parses as one equality assertion, never as more filter.
        let f = format!("(uid={})", ldap_escape("x)(|(uid=*"));
        assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
    }

    #[test]
    fn bytes_are_all_escaped() {
        assert_eq!(filter_bytes(&[0x00, 0x2a, 0xff]), "\\00\\2a\\ff");
        assert_eq!(filter_bytes(&[]), "");
    }
}
