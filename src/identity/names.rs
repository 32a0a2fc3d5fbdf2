//! User names: one canonical form per name, so that names which look alike are one name.
//!
//! The form is RFC 8265's UsernameCaseMapped profile (width mapping, so fullwidth `ａｄｍｉｎ`
//! is `admin`; lower case; NFC; the PRECIS IdentifierClass, which refuses control, invisible
//! and most symbol characters), applied to each space-separated word as RFC 8265 §3.5
//! suggests, after trimming spaces at both ends. The profile comes from `precis-profiles`
//! rather than our own tables: its Unicode tables are generated from the Unicode Character
//! Database and its test suite carries the RFC's vectors, which hand-kept lists of "invisible"
//! characters never match.
//!
//! Two entry points:
//! - [`normalize_user_name`]: what a local user's name is stored as (administration calls it
//!   when a user is created) and what the local provider looks a login name up by;
//! - [`prepare_login_name`]: what the whole login string (`DOMAIN\name`, `LDAP+N:name`, ...)
//!   becomes before it is split into its form. It maps widths, trims, applies NFC and refuses
//!   control and invisible characters, but keeps case and the other characters, because a
//!   directory's names are the directory's to judge.

use precis_core::profile::{Profile, Rules};
use precis_core::{DerivedPropertyValue, FreeformClass, IdentifierClass, StringClass};
use precis_profiles::UsernameCaseMapped;

/// The longest local user name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Names no local user may have: `everyone` is the trustee that matches every identity.
pub const RESERVED_NAMES: &[&str] = &["everyone"];

/// Why a name is refused. The messages say what is wrong, for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the user name is empty")]
    Empty,
    #[error("the user name is longer than {max} characters")]
    TooLong { max: usize },
    #[error("the user name contains a control character ({}); tabs and line breaks are not allowed", code(*.0))]
    Control(char),
    #[error("the user name contains whitespace other than a plain space ({})", code(*.0))]
    Whitespace(char),
    #[error("the user name contains an invisible or formatting character ({})", code(*.0))]
    Invisible(char),
    #[error("the user name contains an unassigned code point ({})", code(*.0))]
    Unassigned(char),
    #[error("the user name contains '{ch}' ({code}), which user names may not hold (letters, digits and ASCII punctuation may)", ch = .0, code = code(*.0))]
    Disallowed(char),
    #[error("the user name has two spaces in a row")]
    DoubleSpace,
    #[error("the user name mixes right-to-left and left-to-right text in a way that can display misleadingly")]
    Direction,
    #[error("the user name contains '{0}', which separates a domain or a provider prefix in login names")]
    Separator(char),
    #[error("'{0}' is a reserved word and cannot be a user name")]
    Reserved(String),
}

fn code(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

/// The error for a character a PRECIS class refused.
fn refused(c: char) -> NameError {
    if c.is_control() {
        return NameError::Control(c);
    }
    if c.is_whitespace() {
        return NameError::Whitespace(c);
    }
    match FreeformClass::default().get_value_from_char(c) {
        // Even the permissive class refuses it: default-ignorable (invisible) code points,
        // noncharacters and the like; zero-width joiners are context-dependent there.
        DerivedPropertyValue::Disallowed | DerivedPropertyValue::ContextJ => {
            NameError::Invisible(c)
        }
        DerivedPropertyValue::Unassigned => NameError::Unassigned(c),
        _ => NameError::Disallowed(c),
    }
}

/// Refuses control, invisible and unassigned characters and whitespace other than U+0020.
fn refuse_hidden(s: &str) -> Result<(), NameError> {
    let freeform = FreeformClass::default();
    for c in s.chars() {
        if c == ' ' {
            continue;
        }
        let invisible = matches!(
            freeform.get_value_from_char(c),
            DerivedPropertyValue::Disallowed | DerivedPropertyValue::Unassigned
        );
        // Zero-width (non-)joiners are allowed by PRECIS after a virama; we refuse them
        // everywhere: a name that differs from another only by one is a spoof.
        let joiner =
            IdentifierClass::default().get_value_from_char(c) == DerivedPropertyValue::ContextJ;
        if c.is_control() || c.is_whitespace() || invisible || joiner {
            return Err(refused(c));
        }
    }
    Ok(())
}

fn from_precis(e: precis_core::Error) -> NameError {
    match e {
        precis_core::Error::BadCodepoint(info) => match char::from_u32(info.cp) {
            Some(c) => refused(c),
            None => NameError::Empty,
        },
        // Raised for empty strings (excluded before) and for the bidi rule.
        precis_core::Error::Invalid => NameError::Direction,
        precis_core::Error::Unexpected(_) => NameError::Direction,
    }
}

/// Maps fullwidth and halfwidth forms to their ordinary ones and trims spaces at both ends
/// (U+3000, the ideographic space, has become a plain space by then).
fn width_mapped_and_trimmed(raw: &str) -> Result<String, NameError> {
    let mapped = UsernameCaseMapped::new()
        .width_mapping_rule(raw)
        .map_err(from_precis)?;
    Ok(mapped.trim_matches(' ').to_string())
}

/// The canonical form of a local user's name, or why it cannot be one.
pub fn normalize_user_name(raw: &str) -> Result<String, NameError> {
    let trimmed = width_mapped_and_trimmed(raw)?;
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    refuse_hidden(&trimmed)?;
    if trimmed.contains("  ") {
        return Err(NameError::DoubleSpace);
    }
    let profile = UsernameCaseMapped::new();
    let mut words = Vec::new();
    for word in trimmed.split(' ') {
        words.push(profile.enforce(word).map_err(from_precis)?.into_owned());
    }
    let name = words.join(" ");
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong {
            max: MAX_NAME_CHARS,
        });
    }
    if let Some(c) = name.chars().find(|c| matches!(c, ':' | '\\')) {
        return Err(NameError::Separator(c));
    }
    if RESERVED_NAMES.contains(&name.as_str()) {
        return Err(NameError::Reserved(name));
    }
    Ok(name)
}

/// A login string as typed, made ready to be split into its form and looked up: widths
/// mapped, trimmed, NFC; refused if it holds control or invisible characters. Case is kept.
pub fn prepare_login_name(raw: &str) -> Result<String, NameError> {
    let trimmed = width_mapped_and_trimmed(raw)?;
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    refuse_hidden(&trimmed)?;
    Ok(UsernameCaseMapped::new()
        .normalization_rule(trimmed)
        .map_err(from_precis)?
        .into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalikes_become_one_name() {
        for (raw, want) in [
            ("admin", "admin"),
            ("Admin", "admin"),
            ("ａｄｍｉｎ", "admin"),
            ("ＡＤＭＩＮ", "admin"),
            (" admin ", "admin"),
            ("admin\u{3000}", "admin"),
            // NFD and NFC forms of "josé".
            ("jose\u{301}", "josé"),
            ("jos\u{e9}", "josé"),
            ("ÄDMIN", "ädmin"),
            ("John Smith", "john smith"),
            ("a.b-c_d@example.com", "a.b-c_d@example.com"),
            ("ｶﾀｶﾅ", "カタカナ"),
        ] {
            assert_eq!(normalize_user_name(raw).as_deref(), Ok(want), "{raw:?}");
        }
    }

    #[test]
    fn hidden_and_reserved_names_are_refused_with_the_reason() {
        use NameError::*;
        for (raw, want) in [
            ("", Empty),
            ("   ", Empty),
            ("ad\u{200B}min", Invisible('\u{200B}')),
            ("admin\u{200D}", Invisible('\u{200D}')),
            ("\u{FEFF}admin", Invisible('\u{FEFF}')),
            ("ad\u{00AD}min", Invisible('\u{00AD}')),
            ("ad\tmin", Control('\t')),
            ("admin\n", Control('\n')),
            ("ad\u{0}min", Control('\u{0}')),
            ("ad\u{00A0}min", Whitespace('\u{00A0}')),
            ("john  smith", DoubleSpace),
            ("everyone", Reserved("everyone".into())),
            ("EVERYONE", Reserved("everyone".into())),
            ("ｅｖｅｒｙｏｎｅ", Reserved("everyone".into())),
            ("corp\\bob", Separator('\\')),
            ("local:bob", Separator(':')),
            ("bob\u{1F600}", Disallowed('\u{1F600}')),
            ("\u{FB01}le", Disallowed('\u{FB01}')),
        ] {
            assert_eq!(normalize_user_name(raw), Err(want), "{raw:?}");
        }
        assert_eq!(
            normalize_user_name(&"a".repeat(MAX_NAME_CHARS + 1)),
            Err(TooLong {
                max: MAX_NAME_CHARS
            })
        );
        assert!(normalize_user_name(&"a".repeat(MAX_NAME_CHARS)).is_ok());
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let msg = |s: &str| normalize_user_name(s).err().map(|e| e.to_string());
        assert_eq!(
            msg("ad\u{200B}min").as_deref(),
            Some("the user name contains an invisible or formatting character (U+200B)")
        );
        assert_eq!(
            msg("a\tb").as_deref(),
            Some("the user name contains a control character (U+0009); tabs and line breaks are not allowed")
        );
        assert_eq!(
            msg("everyone").as_deref(),
            Some("'everyone' is a reserved word and cannot be a user name")
        );
    }

    #[test]
    fn login_names_keep_case_and_form_but_lose_width_and_padding() {
        assert_eq!(prepare_login_name("ａｄｍｉｎ").as_deref(), Ok("admin"));
        assert_eq!(prepare_login_name(" Admin ").as_deref(), Ok("Admin"));
        assert_eq!(
            prepare_login_name("ＣＯＲＰ＼bob").as_deref(),
            Ok("CORP\\bob")
        );
        assert_eq!(
            prepare_login_name("LDAP+X:O\u{2019}Brien").as_deref(),
            Ok("LDAP+X:O\u{2019}Brien")
        );
        assert_eq!(prepare_login_name("jose\u{301}").as_deref(), Ok("josé"));
        assert!(prepare_login_name("ad\u{200B}min").is_err());
        assert!(prepare_login_name("admin\n").is_err());
        assert!(prepare_login_name("").is_err());
    }
}
