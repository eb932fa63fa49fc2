//! What a credential looks like: the detectors, each finding byte spans of
//! one text (the scan text of [`crate::scan`]) by a literal anchor and a
//! check of what follows it, in time linear in the text.

use arbiter_sdk::strings::last_token;
use serde::{Deserialize, Serialize};

/// A span of the scanned text and the detector that found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit<'p> {
    pub start: usize,
    pub end: usize,
    pub code: &'p str,
}

/// The characters a credential is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Charset {
    /// `A-Z a-z 0-9`.
    Alphanumeric,
    /// `A-Z 0-9`.
    UpperAlphanumeric,
    /// `0-9 a-f A-F`.
    Hex,
    /// `A-Z a-z 0-9 + /`, then up to two `=`.
    Base64,
    /// `A-Z a-z 0-9 - _`.
    Base64url,
    /// RFC 7235 token68: `A-Z a-z 0-9 - . _ ~ + /`, then `=` padding.
    Token68,
}

impl Charset {
    fn contains(self, b: u8) -> bool {
        match self {
            Charset::Alphanumeric => b.is_ascii_alphanumeric(),
            Charset::UpperAlphanumeric => b.is_ascii_uppercase() || b.is_ascii_digit(),
            Charset::Hex => b.is_ascii_hexdigit(),
            Charset::Base64 => b.is_ascii_alphanumeric() || b == b'+' || b == b'/',
            Charset::Base64url => b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
            Charset::Token68 => b.is_ascii_alphanumeric() || b"-._~+/".contains(&b),
        }
    }

    fn padded(self) -> bool {
        matches!(self, Charset::Base64 | Charset::Token68)
    }
}

/// A literal prefix, then a run of one charset: most issued tokens
/// (`AKIA…`, `ghp_…`, `xoxb-…`, `sk-…`) and every configured pattern.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub code: String,
    /// Matched as written, or in the lowercased text when `fold_case`
    /// (then written in lowercase).
    pub prefixes: Vec<String>,
    pub fold_case: bool,
    /// The prefix must not continue a word (`task-…` is no `sk-…` key).
    pub word_start: bool,
    /// Spaces or tabs separate prefix and credential (`Bearer <token>`);
    /// only the credential is masked.
    pub gap: bool,
    pub charset: Charset,
    pub min: usize,
    pub max: usize,
    /// The credential holds a digit and a letter (prose rarely does).
    pub mixed: bool,
}

impl Token {
    fn issued(code: &str, prefixes: &[&str], charset: Charset, min: usize) -> Self {
        Token {
            code: code.to_owned(),
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            fold_case: false,
            word_start: false,
            gap: false,
            charset,
            min,
            max: usize::MAX,
            mixed: false,
        }
    }

    /// A configured shape: `prefix` as written, then `min` or more.
    pub(crate) fn configured(code: String, prefix: String, charset: Charset, min: usize) -> Self {
        Token { code, prefixes: vec![prefix], ..Token::issued("", &[], charset, min) }
    }

    pub(crate) fn find<'p>(&'p self, text: &str, lower: &str, out: &mut Vec<Hit<'p>>) {
        let haystack = if self.fold_case { lower } else { text };
        let bytes = text.as_bytes();
        // One pass for prefixes sharing a stem (`gh`, `xox`), not one each.
        let stem = common_stem(&self.prefixes);
        let passes: Vec<&str> =
            if stem.len() >= 2 { vec![stem] } else { self.prefixes.iter().map(String::as_str).collect() };
        for pass in passes {
            for at in overlapping(haystack, pass) {
                let Some(prefix) = self.prefixes.iter().find(|p| haystack[at..].starts_with(p.as_str())) else {
                    continue;
                };
                if self.word_start && at > 0 && is_word_byte(bytes[at - 1]) {
                    continue;
                }
                let mut credential = at + prefix.len();
                if self.gap {
                    let spaces = bytes[credential..].iter().take(9).take_while(|b| matches!(b, b' ' | b'\t')).count();
                    if spaces == 0 || spaces > 8 {
                        continue;
                    }
                    credential += spaces;
                }
                let run = bytes[credential..].iter().take(self.max).take_while(|b| self.charset.contains(**b)).count();
                let mut end = credential + run;
                if run < self.min {
                    continue;
                }
                if self.charset.padded() {
                    end += bytes[end..].iter().take(2).take_while(|b| **b == b'=').count();
                }
                let value = &bytes[credential..end];
                if self.mixed && !(value.iter().any(u8::is_ascii_digit) && value.iter().any(u8::is_ascii_alphabetic)) {
                    continue;
                }
                let start = if self.gap { credential } else { at };
                out.push(Hit { start, end, code: &self.code });
            }
        }
    }
}

/// Every start of `needle` in `haystack`, overlapping ones included
/// (`xoxoxb-…` holds `xoxb-` at 2, which a search resuming after the `xox`
/// at 0 would miss).
fn overlapping<'a>(haystack: &'a str, needle: &'a str) -> impl Iterator<Item = usize> + 'a {
    let step = needle.chars().next().map_or(1, char::len_utf8);
    let mut from = 0;
    std::iter::from_fn(move || {
        let at = from + haystack.get(from..)?.find(needle)?;
        from = at + step;
        Some(at)
    })
}

/// The longest prefix all of `prefixes` share (ASCII, so a char boundary).
fn common_stem(prefixes: &[String]) -> &str {
    let Some((first, rest)) = prefixes.split_first() else { return "" };
    let len = rest
        .iter()
        .fold(first.len(), |len, p| first.bytes().zip(p.bytes()).take(len).take_while(|(a, b)| a == b).count());
    first.get(..len).unwrap_or_default()
}

/// Letters, digits, `_` and `-`: what continues a token.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The built-in issued-token detectors.
pub(crate) fn builtin_tokens() -> Vec<Token> {
    use Charset::*;
    let aws =
        Token { max: 16, ..Token::issued("aws_access_key", &["AKIA", "ASIA", "ABIA", "ACCA"], UpperAlphanumeric, 16) };
    let github_pat = Token::issued("github_token", &["github_pat_"], Base64url, 22);
    let openai = Token { word_start: true, mixed: true, ..Token::issued("openai_key", &["sk-"], Base64url, 20) };
    let bearer = Token {
        fold_case: true,
        word_start: true,
        gap: true,
        mixed: true,
        ..Token::issued("bearer_token", &["bearer"], Token68, 16)
    };
    vec![
        aws,
        Token::issued("github_token", &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"], Alphanumeric, 36),
        github_pat,
        Token::issued("slack_token", &["xoxb-", "xoxp-", "xoxa-", "xoxo-", "xoxr-", "xoxs-", "xoxe-"], Base64url, 10),
        Token::issued("slack_webhook", &["https://hooks.slack.com/services/"], Base64, 20),
        openai,
        bearer,
    ]
}

/// Private key blocks in each `separator`-delimited segment of `text` (see
/// [`blocks`]); segments without `-----` cost nothing more than the search
/// for it.
pub(crate) fn private_keys<'p>(text: &str, separator: char, out: &mut Vec<Hit<'p>>) {
    let mut done = 0;
    for (dashes, _) in text.match_indices("-----") {
        if dashes < done {
            continue;
        }
        let start = text[..dashes].rfind(separator).map_or(0, |i| i + 1);
        let end = text[dashes..].find(separator).map_or(text.len(), |i| dashes + i);
        let first = out.len();
        blocks(&text[start..end], out);
        for hit in &mut out[first..] {
            hit.start += start;
            hit.end += start;
        }
        done = end;
    }
}

/// `-----BEGIN … PRIVATE KEY-----` through its `-----END …-----`, or to the
/// end of the text when the end is not in it; an `-----END … PRIVATE
/// KEY-----` with no beginning before it masks everything up to it (the
/// key began in an earlier string or was cut).
fn blocks<'p>(text: &str, out: &mut Vec<Hit<'p>>) {
    const CODE: &str = "private_key";
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END ";
    // The next markers at or after `from`, searched again only once passed,
    // so many blocks in one text cost one pass, not one per block.
    let (mut from, mut begin, mut end) = (0, armour(text, 0, BEGIN), armour(text, 0, END));
    loop {
        if begin.is_some_and(|(at, _)| at < from) {
            begin = armour(text, from, BEGIN);
        }
        if end.is_some_and(|(at, _)| at < from) {
            end = armour(text, from, END);
        }
        if let Some((_, orphan_end)) = end.filter(|(at, _)| begin.is_none_or(|(b, _)| *at < b)) {
            out.push(Hit { start: from, end: orphan_end, code: CODE });
            from = orphan_end;
            continue;
        }
        let Some((start, header_end)) = begin else { return };
        let close = match end {
            Some((at, close)) if at >= header_end => close,
            Some(_) => armour(text, header_end, END).map_or(text.len(), |(_, close)| close),
            None => text.len(),
        };
        out.push(Hit { start, end: close, code: CODE });
        from = close;
    }
}

/// The next `lead` line at or after `from` whose label names a private key
/// (`-----BEGIN RSA PRIVATE KEY-----`): its start and the end of its
/// closing dashes.
fn armour(text: &str, from: usize, lead: &str) -> Option<(usize, usize)> {
    const MAX_LABEL: usize = 64;
    let mut at = from;
    while let Some(found) = text[at..].find(lead) {
        let start = at + found;
        let label_start = start + lead.len();
        let window = &text.as_bytes()[label_start..text.len().min(label_start + MAX_LABEL + 5)];
        if let Some(dashes) = window.windows(5).position(|w| w == b"-----")
            && window[..dashes].windows(11).any(|w| w == b"PRIVATE KEY")
        {
            return Some((start, label_start + dashes + 5));
        }
        at = label_start;
    }
    None
}

/// Names under which an AWS secret access key is written.
const AWS_SECRET_NAMES: [&str; 4] = ["secret_access_key", "secretaccesskey", "secret-access-key", "aws_secret_key"];
const AWS_SECRET_LEN: usize = 40;
/// The AWS secret access key detector's code.
pub(crate) const AWS_SECRET_KEY: &str = "aws_secret_key";

/// A 40-character secret access key right after its name
/// (`aws_secret_access_key = "…"`, `"SecretAccessKey": "…"`): without the
/// name, 40 base64 characters are any digest.
pub(crate) fn aws_secrets_after_name<'p>(text: &str, lower: &str, out: &mut Vec<Hit<'p>>) {
    let bytes = text.as_bytes();
    for name in AWS_SECRET_NAMES {
        for (at, _) in lower.match_indices(name) {
            let after = at + name.len();
            let gap = bytes[after..].iter().take(17).take_while(|b| b" \t\r\n\"'`:=>,\\".contains(b)).count();
            if gap > 16 {
                continue;
            }
            if let Some(end) = aws_secret_at(bytes, after + gap) {
                out.push(Hit { start: after + gap, end, code: AWS_SECRET_KEY });
            }
        }
    }
}

/// A string that is a secret access key (trimmed), at a member whose name
/// says so (`{"aws_secret_access_key": "…"}`): its span.
pub(crate) fn aws_secret_by_member(pointer: &str, text: &str) -> Option<(usize, usize)> {
    // Most strings are shorter: no need to look at the name.
    if text.len() < AWS_SECRET_LEN {
        return None;
    }
    let member = last_token(pointer).to_ascii_lowercase();
    if !AWS_SECRET_NAMES.iter().any(|n| member.contains(n)) {
        return None;
    }
    let start = text.len() - text.trim_start().len();
    let end = aws_secret_at(text.as_bytes(), start)?;
    text[end..].trim().is_empty().then_some((start, end))
}

/// Exactly 40 base64 characters at `at`: the end of them.
fn aws_secret_at(bytes: &[u8], at: usize) -> Option<usize> {
    let run = bytes[at..].iter().take(AWS_SECRET_LEN + 1).take_while(|b| Charset::Base64.contains(**b)).count();
    (run == AWS_SECRET_LEN).then_some(at + run)
}

/// Configured literal markers (lowercase), found in any case.
pub(crate) fn markers<'p>(markers: &'p [String], lower: &str, out: &mut Vec<Hit<'p>>) {
    const CODE: &str = "pii_marker";
    for marker in markers {
        out.extend(lower.match_indices(marker.as_str()).map(|(at, m)| Hit {
            start: at,
            end: at + m.len(),
            code: CODE,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(String, String)> {
        let tokens = builtin_tokens();
        let lower = text.to_ascii_lowercase();
        let mut hits = Vec::new();
        for token in &tokens {
            token.find(text, &lower, &mut hits);
        }
        private_keys(text, '\0', &mut hits);
        aws_secrets_after_name(text, &lower, &mut hits);
        hits.sort_by_key(|h| h.start);
        hits.into_iter().map(|h| (text[h.start..h.end].to_owned(), h.code.to_owned())).collect()
    }

    #[test]
    fn issued_tokens() {
        let gh = format!("ghp_{}", "a1B2".repeat(9));
        let cases: Vec<(String, Vec<(&str, &str)>)> = vec![
            ("key AKIAIOSFODNN7EXAMPLE here".into(), vec![("AKIAIOSFODNN7EXAMPLE", "aws_access_key")]),
            ("xAKIAIOSFODNN7EXAMPLEx".into(), vec![("AKIAIOSFODNN7EXAMPLE", "aws_access_key")]),
            ("ASIAY34FZKBOKMUTVV7A".into(), vec![("ASIAY34FZKBOKMUTVV7A", "aws_access_key")]),
            ("AKIA too short".into(), vec![]),
            (gh.clone(), vec![(gh.as_str(), "github_token")]),
            ("xoxb-1234567890-abcdefghij".into(), vec![("xoxb-1234567890-abcdefghij", "slack_token")]),
            ("sk-proj-abc123DEF456ghi789JKL".into(), vec![("sk-proj-abc123DEF456ghi789JKL", "openai_key")]),
            ("risk-assessment-of-the-quarterly-report".into(), vec![]),
            ("task-sk-1234567890abcdefghij".into(), vec![]),
            ("xoxoxb-1234567890-abcdefghij".into(), vec![("xoxb-1234567890-abcdefghij", "slack_token")]),
            (format!("gh{gh}"), vec![(gh.as_str(), "github_token")]),
            (
                "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig".into(),
                vec![("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "bearer_token")],
            ),
            ("authorization: BEARER\tabcdef0123456789XYZ==".into(), vec![("abcdef0123456789XYZ==", "bearer_token")]),
            ("the bearer of this letter is welcome".into(), vec![]),
            (
                "aws_secret_access_key = \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"".into(),
                vec![("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_key")],
            ),
            ("commit 0123456789abcdef0123456789abcdef01234567".into(), vec![]),
        ];
        for (text, expected) in cases {
            let expected: Vec<(String, String)> =
                expected.into_iter().map(|(s, c)| (s.to_owned(), c.to_owned())).collect();
            assert_eq!(found(&text), expected, "{text}");
        }
    }

    #[test]
    fn private_key_blocks_whole_cut_or_orphaned() {
        let block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----";
        assert_eq!(found(&format!("key:\n{block}\nbye")), [(block.to_owned(), "private_key".to_owned())]);
        let cut = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk";
        assert_eq!(found(&format!("x {cut}")), [(cut.to_owned(), "private_key".to_owned())]);
        let tail = "LXtMDAw\n-----END PRIVATE KEY-----";
        assert_eq!(found(&format!("{tail} and more")), [(tail.to_owned(), "private_key".to_owned())]);
        assert_eq!(found("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"), []);
        let two = format!("{block} and {block}");
        assert_eq!(found(&two).len(), 2);
    }
}
