//! `vedauth jwt ...`: JWT mappings (the same operations as the admin API's, as the operator)
//! and a dry run of the JWT grant that says which step refuses a token.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use super::admin::{admin_op, print};
use super::GlobalOpts;
use crate::admin::{Caller, Page};
use crate::domain::JwtMapping;

#[derive(Debug, Subcommand)]
pub enum JwtCmd {
    /// Trust an issuer's tokens: add a JWT mapping (turn the grant on with
    /// `vedauth config set AuthorizeByJwt true`).
    Add(MappingArgs),
    /// Replace a JWT mapping (every field, as `add` takes them).
    Update(MappingArgs),
    /// List the JWT mappings, by name.
    List,
    /// Show one JWT mapping.
    Show {
        /// The mapping's name.
        name: String,
    },
    /// Remove a JWT mapping.
    Remove {
        /// The mapping's name.
        name: String,
    },
    /// Dry run of `authorize/jwt` for one token: every check up to the grant, saying which one
    /// refuses and why. Records nothing and issues nothing (it may fetch the issuer's keys).
    Explain {
        /// A file holding the JWT, or `-` for standard input.
        #[arg(long)]
        jwt: PathBuf,
        /// Check the application and its rules for the identity too.
        #[arg(long)]
        client_id: Option<String>,
        /// With --client-id: check that this scope would be granted.
        #[arg(long, requires = "client_id")]
        scope: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct MappingArgs {
    /// The mapping's name (unique; an issuer's mappings are tried in name order).
    pub name: String,
    /// The issuer: must equal the tokens' `iss` exactly.
    #[arg(long)]
    pub issuer: String,
    /// The issuer's JWK Set (https); without it, OIDC discovery on the issuer.
    #[arg(long)]
    pub jwks_uri: Option<String>,
    /// The claim that says what the token is for.
    #[arg(long, default_value = "aud")]
    pub purpose_field: String,
    /// The value that claim must have (or, for an array, contain).
    #[arg(long)]
    pub purpose_match: String,
    /// The claim that names the token's owner.
    #[arg(long, default_value = "sub")]
    pub id_field: String,
    /// A regular expression the whole claim must match; its first group is the identity
    /// unless --grantee is given.
    #[arg(long)]
    pub id_match: String,
    /// A fixed identity for every token the mapping accepts: a user name or a prefixed
    /// universal.
    #[arg(long)]
    pub grantee: Option<String>,
}

impl From<MappingArgs> for JwtMapping {
    fn from(a: MappingArgs) -> Self {
        JwtMapping {
            name: a.name,
            issuer_uri: a.issuer,
            jwks_uri: a.jwks_uri,
            purpose_field: a.purpose_field,
            purpose_match: a.purpose_match,
            id_field: a.id_field,
            id_match: a.id_match,
            grantee_prefixed_universal: a.grantee,
        }
    }
}

fn describe(m: &JwtMapping) -> String {
    format!(
        "{}: issuer {} (keys {}), {} = {:?}, {} matches {:?} -> {}",
        m.name,
        m.issuer_uri,
        m.jwks_uri().unwrap_or("by OIDC discovery"),
        m.purpose_field,
        m.purpose_match,
        m.id_field,
        m.id_match,
        m.grantee().unwrap_or("its first group"),
    )
}

fn read_jwt(path: &PathBuf) -> anyhow::Result<String> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the JWT from standard input")?;
    } else {
        text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(text.trim().to_string())
}

pub async fn run(g: &GlobalOpts, cmd: JwtCmd) -> anyhow::Result<()> {
    let asm = g.open_assembly().await?;
    let admin = asm.admin.clone();
    let me = &Caller::Operator;
    match cmd {
        JwtCmd::Add(args) => {
            let m = admin_op(admin.create_jwt_mapping(me, args.into()).await)?;
            print(g.json, &m, || format!("added {}", describe(&m)));
        }
        JwtCmd::Update(args) => {
            let m: JwtMapping = args.into();
            admin_op(admin.update_jwt_mapping(me, m.clone()).await)?;
            print(g.json, &m, || format!("updated {}", describe(&m)));
        }
        JwtCmd::List => {
            let all = admin_op(admin.enumerate_jwt_mappings(me, Page::default()).await)?;
            print(g.json, &all, || {
                if all.is_empty() {
                    "no JWT mappings".to_string()
                } else {
                    all.iter().map(describe).collect::<Vec<_>>().join("\n")
                }
            });
        }
        JwtCmd::Show { name } => {
            let m = admin_op(admin.get_jwt_mapping(me, &name).await)?;
            print(g.json, &m, || describe(&m));
        }
        JwtCmd::Remove { name } => {
            admin_op(admin.delete_jwt_mapping(me, &name).await)?;
            print(
                g.json,
                &serde_json::json!({"name": name, "removed": true}),
                || format!("{name} removed"),
            );
        }
        JwtCmd::Explain {
            jwt,
            client_id,
            scope,
        } => {
            let token = read_jwt(&jwt)?;
            let x = asm
                .engine
                .explain_jwt(&token, client_id.as_deref(), scope.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let refused = x.refused_at().map(str::to_string);
            if g.json {
                let steps: Vec<_> = x
                    .steps
                    .iter()
                    .map(|(step, r)| match r {
                        Ok(m) => serde_json::json!({"step": step, "ok": true, "detail": m}),
                        Err(m) => serde_json::json!({"step": step, "ok": false, "detail": m}),
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "accepted": refused.is_none(),
                        "refused_at": refused,
                        "identity": x.identity,
                        "steps": steps,
                    }))?
                );
            } else {
                for (step, r) in &x.steps {
                    match r {
                        Ok(m) => println!("ok       {step}: {m}"),
                        Err(m) => println!("REFUSED  {step}: {m}"),
                    }
                }
            }
            if let Some(step) = refused {
                bail!("the JWT grant would refuse this token at step {step}");
            }
        }
    }
    Ok(())
}
