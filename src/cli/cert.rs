//! `vedauth cert ...`: the certificate grant's trusted issuers, and a dry run of its checks on
//! a certificate (docs/certificate-auth.md).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use rustls_pki_types::pem::{self, SectionKind};
use rustls_pki_types::CertificateDer;

use super::admin::{admin_op, print};
use super::GlobalOpts;
use crate::admin::Caller;
use crate::certauth::{ChainSource, PresentedChain};

#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// The CAs trusted to issue client certificates.
    #[command(subcommand)]
    Issuer(IssuerCmd),
    /// Run the certificate grant's checks on a certificate (the leaf first, then any
    /// intermediates, in one PEM file) with the server's settings, issuers and identity
    /// providers, and say which step refuses it. Nothing is issued.
    Explain {
        /// PEM file: the client certificate, optionally followed by its intermediates.
        #[arg(long = "cert")]
        cert: PathBuf,
        /// Also check the application and the rule that would admit the identity.
        #[arg(long = "client-id")]
        client_id: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IssuerCmd {
    /// Trust the CA certificates of a PEM bundle (`-` reads standard input).
    Add {
        /// PEM file holding one or more CA certificates.
        file: PathBuf,
    },
    /// List the trusted issuers.
    List,
    /// Stop trusting an issuer, named by its SHA-256 fingerprint.
    Remove {
        /// 64 hex digits (colons and a `sha256:` prefix allowed).
        fingerprint: String,
    },
}

fn read_input(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(file).with_context(|| format!("reading {}", file.display()))
    }
}

pub async fn run(g: &GlobalOpts, cmd: CertCmd) -> anyhow::Result<()> {
    let asm = g.open_assembly().await?;
    let me = &Caller::Operator;
    match cmd {
        CertCmd::Issuer(IssuerCmd::Add { file }) => {
            let pem = String::from_utf8(read_input(&file)?).context("the bundle is not text")?;
            let added = admin_op(asm.admin.add_issuers(me, &pem).await)?;
            print(g.json, &added, || {
                added
                    .iter()
                    .map(|i| {
                        format!(
                            "{} {} ({})",
                            if i.added == Some(true) {
                                "trusted"
                            } else {
                                "already trusted"
                            },
                            i.fingerprint,
                            i.subject
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        CertCmd::Issuer(IssuerCmd::List) => {
            let list = admin_op(asm.admin.list_issuers(me).await)?;
            print(g.json, &list, || {
                if list.is_empty() {
                    return "no trusted issuers".into();
                }
                list.iter()
                    .map(|i| {
                        format!(
                            "{}  {}  valid until {}",
                            i.fingerprint,
                            i.subject,
                            crate::wire_time::Iso8601(i.not_after)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        CertCmd::Issuer(IssuerCmd::Remove { fingerprint }) => {
            admin_op(asm.admin.remove_issuer(me, &fingerprint).await)?;
            print(
                g.json,
                &serde_json::json!({"fingerprint": fingerprint, "removed": true}),
                || format!("{fingerprint} is no longer trusted"),
            );
        }
        CertCmd::Explain { cert, client_id } => {
            let bytes = read_input(&cert)?;
            let mut rd = bytes.as_slice();
            let mut certs = Vec::new();
            loop {
                match pem::from_buf(&mut rd) {
                    Ok(Some((SectionKind::Certificate, der))) => {
                        certs.push(CertificateDer::from(der))
                    }
                    // A key in the same file (curl's --cert can take both) is skipped.
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => bail!("{}: not PEM: {e}", cert.display()),
                }
            }
            let Some(chain) = PresentedChain::new(certs, ChainSource::Tls) else {
                bail!("{}: holds no certificate", cert.display());
            };
            let steps = asm
                .engine
                .explain_certificate(&chain, client_id.as_deref())
                .await?;
            let accepted = steps.iter().all(|s| s.ok);
            print(
                g.json,
                &serde_json::json!({"accepted": accepted, "steps": steps}),
                || {
                    let mut out: Vec<String> = steps
                        .iter()
                        .map(|s| {
                            format!(
                                "{:<16} {}  {}",
                                s.step,
                                if s.ok { "ok     " } else { "REFUSED" },
                                s.detail
                            )
                        })
                        .collect();
                    out.push(if accepted {
                        "accepted: a client holding this certificate's key gets a token".into()
                    } else {
                        "refused".into()
                    });
                    out.join("\n")
                },
            );
            if !accepted {
                return Err(super::Reported.into());
            }
        }
    }
    Ok(())
}
