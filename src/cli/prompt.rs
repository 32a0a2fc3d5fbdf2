//! Reading a new password for `user add` and `user passwd`: typed at a terminal (twice, not
//! echoed) or one line on stdin with `--password-stdin`. Never from the command line, where
//! it would show in `ps` and the shell's history.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};

use crate::secret::Secret;

/// Where the password comes from, decided before anything is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `--password-stdin`: the first line of standard input.
    StdinLine,
    /// A person at a terminal: prompt on it, twice.
    Terminal,
}

fn source(password_stdin: bool, stdin_is_terminal: bool) -> anyhow::Result<Source> {
    match (password_stdin, stdin_is_terminal) {
        (true, _) => Ok(Source::StdinLine),
        (false, true) => Ok(Source::Terminal),
        // Making up a password here would leave a user nobody knows the password of, or one
        // printed where it may be logged: a script must say where the password comes from.
        (false, false) => bail!(
            "no password given: standard input is not a terminal to prompt on; pass \
             --password-stdin and give the password as one line on standard input \
             (e.g. printf '%s\\n' \"$PASSWORD\" | vedauth user add NAME --password-stdin)"
        ),
    }
}

/// The new password for `user` (named in the prompt): one line of stdin with `password_stdin`,
/// else typed twice at the terminal without echo (a mismatch is refused). An empty password is
/// refused either way.
pub fn new_password(user: &str, password_stdin: bool) -> anyhow::Result<Secret> {
    let password = match source(password_stdin, std::io::stdin().is_terminal())? {
        Source::StdinLine => read_line(&mut std::io::stdin().lock())?,
        Source::Terminal => {
            let first = rpassword::prompt_password(format!("New password for {user}: "))
                .context("reading the password from the terminal")?;
            if first.is_empty() {
                bail!("the password is empty");
            }
            let again = rpassword::prompt_password("Type it again: ")
                .context("reading the password from the terminal")?;
            if first != again {
                bail!("the two passwords do not match; nothing was changed");
            }
            Secret::new(first)
        }
    };
    Ok(password)
}

/// One line, without its line ending. Reads up to the first newline only, so a caller that
/// keeps its end of the pipe open is not waited for.
fn read_line(input: &mut impl BufRead) -> anyhow::Result<Secret> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    if line.is_empty() {
        bail!("the password read from standard input is empty");
    }
    Ok(Secret::new(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_is_read_and_the_rest_left() {
        let mut input = std::io::Cursor::new(b"first pw\r\nsecond line\n".to_vec());
        let pw = read_line(&mut input).map(|s| s.expose().to_string()).ok();
        assert_eq!(pw.as_deref(), Some("first pw"));
        let mut rest = String::new();
        let _ = input.read_line(&mut rest);
        assert_eq!(rest, "second line\n");
        assert!(read_line(&mut std::io::Cursor::new(b"\n".to_vec())).is_err());
        assert!(read_line(&mut std::io::Cursor::new(Vec::new())).is_err());
        // Without a final newline (printf '%s' ...): the whole input.
        let pw = read_line(&mut std::io::Cursor::new(b"no-newline".to_vec()))
            .map(|s| s.expose().to_string())
            .ok();
        assert_eq!(pw.as_deref(), Some("no-newline"));
    }

    #[test]
    fn without_a_terminal_the_flag_is_required() {
        assert_eq!(source(true, false).ok(), Some(Source::StdinLine));
        assert_eq!(source(true, true).ok(), Some(Source::StdinLine));
        assert_eq!(source(false, true).ok(), Some(Source::Terminal));
        let msg = source(false, false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("--password-stdin"), "{msg}");
    }
}
