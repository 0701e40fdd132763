//! How keys and values are printed and parsed: printable escaping, hex, and the
//! encodings of the JSON Lines and CSV files of `load`/`export`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::ValueEnum;

use crate::CliError;

/// How a key or value is written as a string in JSON Lines and CSV files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Encoding {
    /// The bytes are UTF-8 text (binary data is an error: use base64 or hex).
    Utf8,
    /// Standard base64 with padding.
    Base64,
    /// Lowercase hex, two digits per byte.
    Hex,
}

impl Encoding {
    /// `bytes` as a string in this encoding.
    pub fn encode(self, bytes: &[u8]) -> Result<String, CliError> {
        match self {
            Encoding::Utf8 => String::from_utf8(bytes.to_vec()).map_err(|_| {
                CliError::new(format!(
                    "{} is not UTF-8; use --encoding base64 or hex",
                    escape(bytes)
                ))
            }),
            Encoding::Base64 => Ok(BASE64.encode(bytes)),
            Encoding::Hex => Ok(hex(bytes)),
        }
    }

    /// The bytes `text` stands for in this encoding.
    pub fn decode(self, text: &str) -> Result<Vec<u8>, String> {
        match self {
            Encoding::Utf8 => Ok(text.as_bytes().to_vec()),
            Encoding::Base64 => BASE64.decode(text).map_err(|e| format!("bad base64: {e}")),
            Encoding::Hex => unhex(text),
        }
    }
}

/// Printable ASCII as is; `\\`, `\n`, `\r`, `\t` and `\xNN` for everything else.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("bad hex: odd number of digits".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("bad hex digits at position {i}"))
        })
        .collect()
}

/// How `scan` prints a key-value pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairStyle {
    /// Escaped key, a tab, escaped value.
    Escaped,
    /// Hex key, a tab, hex value.
    Hex,
    /// A JSON object per line, strings in the given encoding.
    Json(Encoding),
}

impl PairStyle {
    /// One output line (without the newline).
    pub fn line(self, key: &[u8], value: &[u8]) -> Result<String, CliError> {
        match self {
            PairStyle::Escaped => Ok(format!("{}\t{}", escape(key), escape(value))),
            PairStyle::Hex => Ok(format!("{}\t{}", hex(key), hex(value))),
            PairStyle::Json(encoding) => json_line(key, value, encoding),
        }
    }
}

/// `{"key":"...","value":"..."}` with both strings in `encoding`.
pub fn json_line(key: &[u8], value: &[u8], encoding: Encoding) -> Result<String, CliError> {
    let object = serde_json::json!({
        "key": encoding.encode(key)?,
        "value": encoding.encode(value)?,
    });
    Ok(object.to_string())
}

/// The key and value of one JSON Lines record.
pub fn parse_json_line(line: &str, encoding: Encoding) -> Result<(Vec<u8>, Vec<u8>), String> {
    let object: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let field = |name: &str| -> Result<Vec<u8>, String> {
        let text = object.get(name).and_then(serde_json::Value::as_str).ok_or_else(|| {
            "expected an object with string fields \"key\" and \"value\"".to_string()
        })?;
        encoding.decode(text).map_err(|e| format!("{name}: {e}"))
    };
    Ok((field("key")?, field("value")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_encodings_round_trip() {
        assert_eq!(escape(b"a b\\\n\x00\xff"), "a b\\\\\\n\\x00\\xff");
        for encoding in [Encoding::Base64, Encoding::Hex, Encoding::Utf8] {
            let bytes = b"k\x01\xc3\xa9".to_vec();
            let bytes = if encoding == Encoding::Utf8 { b"k\xc3\xa9".to_vec() } else { bytes };
            let text = encoding.encode(&bytes).unwrap();
            assert_eq!(encoding.decode(&text).unwrap(), bytes);
        }
        assert!(Encoding::Utf8.encode(b"\xff").is_err());
        assert!(Encoding::Hex.decode("abc").is_err());
    }
}
