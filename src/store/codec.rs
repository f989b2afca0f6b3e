//! Encoding of everything persisted or sent between nodes: one format
//! version byte, then JSON. JSON rather than bincode because plugin
//! configs are free-form `serde_json::Value`s, which bincode cannot
//! decode (it needs self-describing data for `deserialize_any`).

use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bumped when the persisted or wire format changes incompatibly.
pub const FORMAT_VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT_VERSION];
    serde_json::to_writer(&mut out, value).map_err(io::Error::other)?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => {
            serde_json::from_slice(rest).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }
        Some((v, _)) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unsupported format version {v}"),
        )),
        None => Err(io::Error::new(io::ErrorKind::InvalidData, "empty record")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_other_versions() {
        let bytes = encode(&vec![1u32, 2, 3]).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<Vec<u32>>(&bytes).unwrap(), vec![1, 2, 3]);
        let mut other = bytes.clone();
        other[0] = 99;
        assert!(decode::<Vec<u32>>(&other).is_err());
        assert!(decode::<Vec<u32>>(&[]).is_err());
    }
}
