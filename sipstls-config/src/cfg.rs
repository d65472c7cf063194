//! The tls.cfg reader: Kamailio's section/`key = value` syntax.
//!
//! What it accepts, as Kamailio's `cfg_parser.c` and `tls_config.c` do:
//!
//! - `#` starts a comment (outside quotes), to the end of the line; blank lines are skipped.
//! - A section header `[TYPE:ADDRESS]`, TYPE `server` (`srv`, `s`) or `client` (`cli`,
//!   `c`), ADDRESS `default` (`def`, `*`), `any` (`all`), `IPv4:port` or `[IPv6]:port`;
//!   names are case-insensitive.
//! - `key = value`; keys and enumerated values (methods, booleans, `verify_client`) are
//!   case-insensitive. A value is one word (letters, digits and `_=:;.,?[]/@!$%&*()-+|'"`,
//!   with `\` escaping `#`, `"`, `\` or a space) or a double-quoted string with `\"`, `\\`,
//!   `\n`, `\r`, `\t` escapes. Anything else after the value is an error.
//!
//! Stricter than Kamailio, on purpose: a key before the first section, a key set twice in
//! one profile (Kamailio keeps the last) and line continuations (`\` at the end of a line)
//! are errors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::{ConfigError, ErrorKind, Origin};
use crate::model::{KamailioConfig, ParseOptions, Profile, ProfileKind, RawValue, Selector, Settings};

/// Parses tls.cfg text. `file` names the file in errors.
pub(crate) fn parse(
    text: &str,
    file: &str,
    options: &ParseOptions,
    out: &mut KamailioConfig,
) -> Result<(), ConfigError> {
    let mut current: Option<Profile> = None;
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let err = |kind: ErrorKind, msg: String| ConfigError::new(kind, msg).at(file, line);
        let body = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = body.trim_matches(is_space);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[') {
            let (kind, selector) = parse_header(header).map_err(|(k, m)| err(k, m))?;
            if let Some(done) = current.take() {
                out.profiles.push(done);
            }
            current = Some(Profile {
                kind,
                selector,
                origin: Origin { file: file.to_owned(), line },
                settings: Settings::default(),
            });
            continue;
        }
        let (key, value) = parse_assignment(trimmed).map_err(|(k, m)| err(k, m))?;
        let Some(profile) = current.as_mut() else {
            return Err(err(
                ErrorKind::Syntax,
                format!("{key:?} is outside a profile: start one with [server:...] or [client:...] first"),
            ));
        };
        profile.settings.set(key, RawValue::Text(value), file, line, options)?;
    }
    if let Some(done) = current {
        out.profiles.push(done);
    }
    Ok(())
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\r'
}

type LineError = (ErrorKind, String);

/// Parses what follows `[` in a section header.
fn parse_header(rest: &str) -> Result<(ProfileKind, Selector), LineError> {
    // The header ends at the last `]` (an IPv6 address has its own brackets); only a
    // comment may follow.
    let close = rest.rfind(']').ok_or((ErrorKind::Syntax, "section header without closing ']'".to_owned()))?;
    let after = rest[close + 1..].trim_matches(is_space);
    if !after.is_empty() && !after.starts_with('#') {
        return Err((ErrorKind::Syntax, format!("unexpected {after:?} after the section header")));
    }
    let inner = &rest[..close];
    let (kind, address) = inner
        .split_once(':')
        .ok_or((ErrorKind::Syntax, format!("section [{inner}] is not [server:ADDRESS] or [client:ADDRESS]")))?;
    let kind = match kind.trim_matches(is_space).to_ascii_lowercase().as_str() {
        "server" | "srv" | "s" => ProfileKind::Server,
        "client" | "cli" | "c" => ProfileKind::Client,
        other => {
            return Err((
                ErrorKind::UnknownSection,
                format!("unknown profile type {other:?} in [{inner}] (server or client)"),
            ))
        }
    };
    let selector = parse_selector(address.trim_matches(is_space)).map_err(|m| (ErrorKind::MalformedAddress, m))?;
    Ok((kind, selector))
}

/// Parses `default`, `any` or an address with port.
pub(crate) fn parse_selector(address: &str) -> Result<Selector, String> {
    match address.to_ascii_lowercase().as_str() {
        "default" | "def" | "*" => return Ok(Selector::Default),
        "any" | "all" => return Ok(Selector::Any),
        _ => {}
    }
    let bad = || {
        format!(
            "{address:?} is not default, any, IPv4:port or [IPv6]:port (host names are not allowed, as in Kamailio)"
        )
    };
    let (ip, port) = if let Some(v6) = address.strip_prefix('[') {
        let (ip, port) = v6.split_once(']').ok_or_else(bad)?;
        let port = port.strip_prefix(':').ok_or_else(bad)?;
        (IpAddr::V6(ip.trim_matches(is_space).parse::<Ipv6Addr>().map_err(|_| bad())?), port)
    } else {
        let (ip, port) = address.rsplit_once(':').ok_or_else(bad)?;
        (IpAddr::V4(ip.trim_matches(is_space).parse::<Ipv4Addr>().map_err(|_| bad())?), port)
    };
    let port: u16 = port.trim_matches(is_space).parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(format!("{address:?}: port 0 is not a port"));
    }
    Ok(Selector::Addr(SocketAddr::new(ip, port)))
}

/// Parses `key = value [# comment]`.
fn parse_assignment(line: &str) -> Result<(&str, String), LineError> {
    let key_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(line.len());
    let key = &line[..key_end];
    if key.is_empty() {
        return Err((ErrorKind::Syntax, format!("expected a section header or key = value, found {line:?}")));
    }
    let rest = line[key_end..].trim_start_matches(is_space);
    let rest = rest.strip_prefix('=').ok_or((ErrorKind::Syntax, format!("'=' expected after {key:?}")))?;
    let rest = rest.trim_start_matches(is_space);
    let (value, tail) =
        if let Some(quoted) = rest.strip_prefix('"') { parse_quoted(quoted)? } else { parse_word(rest)? };
    let tail = tail.trim_start_matches(is_space);
    if !tail.is_empty() && !tail.starts_with('#') {
        return Err((
            ErrorKind::Syntax,
            format!("unexpected {tail:?} after the value of {key:?} (quote values that contain spaces)"),
        ));
    }
    Ok((key, value))
}

fn parse_quoted(s: &str) -> Result<(String, &str), LineError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, 't')) => out.push('\t'),
                Some((_, other)) => {
                    return Err((ErrorKind::Syntax, format!("unsupported escape \\{other} in a string")))
                }
                None => {
                    return Err((
                        ErrorKind::Syntax,
                        "line continuations (\\ at the end of a line) are not supported".into(),
                    ))
                }
            },
            c => out.push(c),
        }
    }
    Err((ErrorKind::Syntax, "missing closing quote".into()))
}

fn parse_word(s: &str) -> Result<(String, &str), LineError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '#' => return Ok((finish_word(out)?, &s[i..])),
            '\\' => match chars.next() {
                Some((_, c @ ('#' | '"' | '\\' | ' '))) => out.push(c),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, 't')) => out.push('\t'),
                Some((_, other)) => return Err((ErrorKind::Syntax, format!("unsupported escape \\{other}"))),
                None => {
                    return Err((
                        ErrorKind::Syntax,
                        "line continuations (\\ at the end of a line) are not supported".into(),
                    ))
                }
            },
            c if c.is_ascii_alphanumeric() || "_=:;.,?[]/@!$%&*()-+|'\"".contains(c) => out.push(c),
            c => {
                return Err((
                    ErrorKind::Syntax,
                    format!("invalid character {c:?} in an unquoted value (put the value in double quotes)"),
                ))
            }
        }
    }
    Ok((finish_word(out)?, ""))
}

fn finish_word(word: String) -> Result<String, LineError> {
    if word.is_empty() {
        return Err((ErrorKind::Syntax, "value missing after '='".into()));
    }
    Ok(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments() {
        assert_eq!(parse_assignment("a=b").unwrap(), ("a", "b".to_owned()));
        assert_eq!(parse_assignment("a =\tb # c").unwrap(), ("a", "b".to_owned()));
        assert_eq!(parse_assignment(r#"a = "x y\"z" # c"#).unwrap(), ("a", "x y\"z".to_owned()));
        assert_eq!(parse_assignment(r"a = x\ y\#z").unwrap(), ("a", "x y#z".to_owned()));
        assert_eq!(parse_assignment("a = HIGH:!aNULL").unwrap(), ("a", "HIGH:!aNULL".to_owned()));
        assert!(parse_assignment("a = x y").is_err());
        assert!(parse_assignment("a b").is_err());
        assert!(parse_assignment("a =").is_err());
        assert!(parse_assignment("a = \"x").is_err());
        assert!(parse_assignment("a = ~/x").is_err());
    }

    #[test]
    fn selectors() {
        assert_eq!(parse_selector("*").unwrap(), Selector::Default);
        assert_eq!(parse_selector("ALL").unwrap(), Selector::Any);
        assert_eq!(parse_selector("[::1]:5061").unwrap(), Selector::Addr("[::1]:5061".parse().unwrap()));
        assert_eq!(parse_selector("10.0.0.1:5061").unwrap(), Selector::Addr("10.0.0.1:5061".parse().unwrap()));
        for bad in ["10.0.0.1", "host:5061", "10.0.0.1:0", "10.0.0.1:70000", "[::1]5061", "::1:5061", ""] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }
}
