//! Looking directory users and groups up by name or universal, for rules and roles
//! (docs/protocol.md §11). Only the service account's searches: no bind as the user.

use super::{ad, escape, DirectoryKind, DirectoryProvider, Entry};
use crate::identity::lookup::{Kind, Lookup, Named, Query};
use crate::identity::IdpError;

impl DirectoryProvider {
    /// A user by login name (for AD also by UPN), else a group by its name attribute; or, for
    /// a universal, the user or group with that id.
    pub(super) async fn lookup_entry(&self, query: Query<'_>) -> Result<Lookup, IdpError> {
        match query {
            Query::Name(name) => {
                if name.is_empty() {
                    return Ok(Lookup::NotFound);
                }
                let users = self.find_users(&self.login_filter(name)).await?;
                if !users.is_empty() {
                    return Ok(self.one(&users, Kind::User));
                }
                let filter = format!(
                    "(&{}({}={}))",
                    self.s.group_filter,
                    self.s.group_name_attribute,
                    ldap3::ldap_escape(name)
                );
                let groups = self.find_groups(&filter).await?;
                Ok(self.one(&groups, Kind::Group))
            }
            Query::Universal(universal) => {
                let value = match self.s.kind {
                    DirectoryKind::Ad => match ad::guid_bytes(universal) {
                        Some(raw) => escape::filter_bytes(&raw),
                        None => return Ok(Lookup::NotFound),
                    },
                    DirectoryKind::Ldap if universal.is_empty() => return Ok(Lookup::NotFound),
                    DirectoryKind::Ldap => ldap3::ldap_escape(universal).into_owned(),
                };
                let users = self
                    .find_users(&format!(
                        "(&{}({}={value}))",
                        self.s.user_filter, self.s.id_attribute
                    ))
                    .await?;
                if !users.is_empty() {
                    return Ok(self.one(&users, Kind::User));
                }
                let groups = self
                    .find_groups(&format!(
                        "(&{}({}={value}))",
                        self.s.group_filter, self.s.id_attribute
                    ))
                    .await?;
                Ok(self.one(&groups, Kind::Group))
            }
        }
    }

    /// Groups matching `filter` under the group base; two at most.
    async fn find_groups(&self, filter: &str) -> Result<Vec<Entry>, IdpError> {
        let attrs = [
            self.s.group_name_attribute.as_str(),
            self.s.id_attribute.as_str(),
        ];
        self.pool
            .search(&self.s.group_base_dn, filter, &attrs, 2)
            .await
            .map_err(|m| self.unavailable(m))
    }

    fn one(&self, entries: &[Entry], kind: Kind) -> Lookup {
        let [entry] = entries else {
            return if entries.is_empty() {
                Lookup::NotFound
            } else {
                Lookup::Ambiguous
            };
        };
        let Some(universal) = self.universal_of(entry) else {
            // An entry without a usable id cannot be named by a rule that outlives renames.
            tracing::warn!(provider = %self.s.prefix, dn = %entry.dn, attribute = %self.s.id_attribute, "directory entry has no usable id");
            return Lookup::NotFound;
        };
        let name_attribute = match kind {
            Kind::User => &self.s.login_attribute,
            Kind::Group => &self.s.group_name_attribute,
        };
        let name = entry.first_str(name_attribute).unwrap_or(&entry.dn);
        Lookup::Found(Named {
            identity: crate::domain::Identity::of(&self.s.prefix, &universal),
            name: format!("{}:{name}", self.s.prefix),
            // TPP reports a directory identity's DN as its full name.
            full_name: entry.dn.clone(),
            kind,
        })
    }
}
