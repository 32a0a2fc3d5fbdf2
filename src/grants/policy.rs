//! The grant policy, pure: which rule admits an identity, whether a scope is within what the
//! application and the rule allow, and the lifetimes of a new grant. Only `issue` applies it.

use crate::clock::UnixTime;
use crate::domain::{Application, Lifetime, Rule, Settings};
use crate::identity::Principal;
use crate::scope::Scope;

use super::error::ScopeLimit;

/// Case-insensitive for names, exact enough for universals (which are lower-case hex).
fn trustee_matches(trustee: &str, who: &Principal) -> u8 {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    if eq(trustee, &who.prefixed_universal()) || eq(trustee, &who.prefixed_name()) {
        3
    } else if who.groups.iter().any(|g| eq(trustee, g)) {
        2
    } else if eq(trustee, "everyone") {
        1
    } else {
        0
    }
}

/// The rule that admits `who`: the most specific one (the identity itself, then a group, then
/// `everyone`).
pub fn matching_rule<'a>(rules: &'a [Rule], who: &Principal) -> Option<&'a Rule> {
    rules
        .iter()
        .map(|r| (trustee_matches(&r.trustee, who), r))
        .filter(|(score, _)| *score > 0)
        .max_by_key(|(score, _)| *score)
        .map(|(_, r)| r)
}

/// What keeps `requested` from being granted, with the limit it exceeds: the application's
/// scope first, then the rule's maximum.
pub fn scope_limit<'a>(
    requested: &Scope,
    app: &'a Application,
    rule: &'a Rule,
) -> Option<(ScopeLimit, &'a str)> {
    let app_scope = Scope::parse(&app.max_scope).unwrap_or_default();
    if !requested.is_subset_of(&app_scope) {
        return Some((ScopeLimit::Application, app.max_scope.as_str()));
    }
    match &rule.max_scope {
        Some(m) if !Scope::parse(m).is_ok_and(|m| requested.is_subset_of(&m)) => {
            Some((ScopeLimit::Rule, m.as_str()))
        }
        _ => None,
    }
}

/// The effective lifetimes for a new grant: rule, else application, else global default.
pub fn lifetimes(rule: &Rule, app: &Application, defaults: &Settings) -> (i64, Lifetime, bool) {
    let access = rule
        .access_validity
        .or(app.access_validity)
        .filter(|v| *v > 0)
        .unwrap_or(defaults.default_access_token_validity);
    let grant = rule
        .grant_validity
        .or(app.grant_validity)
        .unwrap_or(Lifetime::from_db(defaults.default_grant_validity));
    let renewable = rule
        .renewable
        .or(app.renewable)
        .unwrap_or(defaults.default_grant_refreshable);
    (access, grant, renewable)
}

/// An access token never outlives its grant.
pub fn cap(t: UnixTime, grant_expiry: Option<UnixTime>) -> UnixTime {
    match grant_expiry {
        Some(e) => t.min(e),
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CanonicalScope;

    fn rule(trustee: &str) -> Rule {
        Rule {
            client_id: "app".into(),
            trustee: trustee.into(),
            description: String::new(),
            max_scope: None,
            access_validity: None,
            grant_validity: None,
            renewable: None,
            created_at: 0,
        }
    }

    fn app(max_scope: &str) -> Application {
        Application {
            scope: max_scope.into(),
            max_scope: CanonicalScope::parse(max_scope).unwrap_or_default(),
            ..Application::bare("a")
        }
    }

    #[test]
    fn most_specific_rule_wins() {
        let who = Principal {
            prefix: "local".into(),
            universal: "{0000}".into(),
            name: "alice".into(),
            full_name: "Alice".into(),
            groups: vec!["local:ops".into()],
            checked_hash: None,
        };
        let rules = vec![rule("everyone"), rule("local:ops"), rule("LOCAL:Alice")];
        assert_eq!(
            matching_rule(&rules, &who).map(|r| r.trustee.as_str()),
            Some("LOCAL:Alice")
        );
        assert_eq!(
            matching_rule(&rules[..2], &who).map(|r| r.trustee.as_str()),
            Some("local:ops")
        );
        assert_eq!(
            matching_rule(&rules[..1], &who).map(|r| r.trustee.as_str()),
            Some("everyone")
        );
        assert!(matching_rule(&[rule("local:bob")], &who).is_none());
    }

    #[test]
    fn scope_limits_name_the_application_first_then_the_rule() {
        let a = app("certificate:manage;configuration");
        let mut r = rule("everyone");
        let ask = |s: &str| Scope::parse(s).unwrap_or_default();
        assert_eq!(scope_limit(&ask("certificate:manage"), &a, &r), None);
        assert_eq!(
            scope_limit(&ask("ssh"), &a, &r),
            Some((ScopeLimit::Application, "certificate:manage;configuration"))
        );
        r.max_scope = CanonicalScope::parse("certificate").ok();
        assert_eq!(
            scope_limit(&ask("certificate:manage"), &a, &r),
            Some((ScopeLimit::Rule, "certificate"))
        );
        assert_eq!(scope_limit(&ask("certificate"), &a, &r), None);
    }

    #[test]
    fn lifetimes_come_from_rule_then_app_then_defaults() {
        let defaults = Settings::default();
        let mut app = app("certificate");
        let mut r = rule("everyone");
        assert_eq!(
            lifetimes(&r, &app, &defaults),
            (
                crate::domain::DEFAULT_ACCESS_VALIDITY,
                Lifetime::Seconds(crate::domain::DEFAULT_GRANT_VALIDITY),
                true
            )
        );
        app.access_validity = Some(60);
        app.grant_validity = Some(Lifetime::Never);
        app.renewable = Some(false);
        assert_eq!(lifetimes(&r, &app, &defaults), (60, Lifetime::Never, false));
        r.access_validity = Some(30);
        r.grant_validity = Some(Lifetime::Seconds(90));
        r.renewable = Some(true);
        assert_eq!(
            lifetimes(&r, &app, &defaults),
            (30, Lifetime::Seconds(90), true)
        );
    }

    #[test]
    fn access_expiry_is_capped_by_the_grant() {
        assert_eq!(cap(100, Some(50)), 50);
        assert_eq!(cap(100, Some(500)), 100);
        assert_eq!(cap(100, None), 100);
    }
}
