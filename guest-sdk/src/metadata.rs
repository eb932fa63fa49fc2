//! The `arbiter-policy` custom section: `{"name":…,"version":…,"sdk":…}`,
//! built at compile time from the policy crate's Cargo metadata.
//!
//! Cargo package names and semver versions contain no characters that need
//! JSON escaping, so the bytes are spliced verbatim.

use crate::SDK_VERSION;

const PARTS: [&str; 4] = ["{\"name\":\"", "\",\"version\":\"", "\",\"sdk\":\"", "\"}"];

/// The length of the section for this crate name and version.
pub const fn encoded_len(name: &str, version: &str) -> usize {
    PARTS[0].len() + name.len() + PARTS[1].len() + version.len() + PARTS[2].len() + SDK_VERSION.len() + PARTS[3].len()
}

/// The section's bytes; `N` must be [`encoded_len`] of the same inputs.
pub const fn encode<const N: usize>(name: &str, version: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let pieces = [PARTS[0], name, PARTS[1], version, PARTS[2], SDK_VERSION, PARTS[3]];
    let mut at = 0;
    let mut p = 0;
    while p < pieces.len() {
        let bytes = pieces[p].as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            out[at] = bytes[i];
            at += 1;
            i += 1;
        }
        p += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_json() {
        const LEN: usize = encoded_len("tool-scope", "1.2.3");
        let bytes: [u8; LEN] = encode("tool-scope", "1.2.3");
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["name"], "tool-scope");
        assert_eq!(value["version"], "1.2.3");
        assert_eq!(value["sdk"], SDK_VERSION);
    }
}
