//! Active Directory's objectGUID as it appears in identities.
//!
//! An identity carries the 16 bytes exactly in the order the directory sends them, as 32
//! lower-case hex characters (`AD+N:410aaf10ea816c4d823e9e05b1ad055d`, as TPP shows them).
//! Windows tools display the same GUID with its first three groups byte-swapped
//! (`{10af0a41-81ea-4d6c-823e-9e05b1ad055d}`); that form is not used here.

/// 16 raw bytes as 32 lower-case hex characters; `None` for any other length.
pub fn guid_hex(raw: &[u8]) -> Option<String> {
    (raw.len() == 16).then(|| hex::encode(raw))
}

/// The inverse of [`guid_hex`] (either case); `None` unless exactly 32 hex digits.
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_round_trip_in_wire_order() {
        // The bytes of {10af0a41-81ea-4d6c-823e-9e05b1ad055d} as AD sends them.
        let raw = [
            0x41, 0x0a, 0xaf, 0x10, 0xea, 0x81, 0x6c, 0x4d, 0x82, 0x3e, 0x9e, 0x05, 0xb1, 0xad,
            0x05, 0x5d,
        ];
        let hex = guid_hex(&raw).expect("16 bytes");
        assert_eq!(hex, "410aaf10ea816c4d823e9e05b1ad055d");
        assert_eq!(guid_bytes(&hex), Some(raw));
        assert_eq!(guid_bytes(&hex.to_ascii_uppercase()), Some(raw));
        assert_eq!(guid_hex(&raw[..15]), None);
        assert_eq!(guid_bytes("410aaf10"), None);
        assert_eq!(guid_bytes("zz0aaf10ea816c4d823e9e05b1ad055d"), None);
        assert_eq!(guid_bytes("+10aaf10ea816c4d823e9e05b1ad055d"), None);
        assert_eq!(guid_bytes("é0aaf10ea816c4d823e9e05b1ad055"), None);
        assert_eq!(guid_bytes("410aaf10ea816c4d823e9e05b1ad055d00"), None);
    }
}
