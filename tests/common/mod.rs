//! A small deterministic processor shared by the engine tests.
#![allow(dead_code)]

use keel::codec::CodecError;
use keel::snapshot::{load_serde, save_serde, StateError};
use keel::{Message, Outcome, Output, Processor};
use serde::{Deserialize, Serialize};

pub const ADD: u16 = 1;
pub const REJECT_ODD: u16 = 2;
pub const PANIC: u16 = 3;

/// Sums u64 payloads; rejects odd values for REJECT_ODD; panics on PANIC after changing state
/// (so replay must reproduce the partial change too).
#[derive(Default, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summer {
    pub total: u64,
    pub applied: u64,
    pub last_sequence: u64,
    pub last_timestamp_ns: u64,
}

pub fn value(message: &Message<'_>) -> u64 {
    u64::from_le_bytes(message.payload[..8].try_into().unwrap())
}

impl Processor for Summer {
    fn apply(&mut self, message: &Message<'_>, out: &mut Output<'_>) -> Outcome {
        assert_eq!(
            message.header.sequence,
            self.last_sequence + 1,
            "contiguous apply"
        );
        self.last_sequence = message.header.sequence;
        self.last_timestamp_ns = message.header.timestamp_ns;
        self.applied += 1;
        match message.header.kind {
            ADD => {
                self.total = self.total.wrapping_add(value(message));
                out.write(&self.total.to_le_bytes()).unwrap();
                Outcome::Accepted
            }
            REJECT_ODD if value(message) % 2 == 1 => Outcome::Rejected(7),
            REJECT_ODD => {
                self.total = self.total.wrapping_add(value(message));
                Outcome::Accepted
            }
            PANIC => {
                self.total = self.total.wrapping_add(1);
                panic!("boom at {}", message.header.sequence);
            }
            _ => Outcome::Rejected(1),
        }
    }

    fn state_hash(&self) -> u64 {
        self.total ^ self.applied.rotate_left(17) ^ self.last_sequence.rotate_left(41)
    }

    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        save_serde(self, out)
    }

    fn load_state(&mut self, _schema_version: u32, bytes: &[u8]) -> Result<(), StateError> {
        *self = load_serde(bytes)?;
        Ok(())
    }
}

pub fn to(kind: u16, correlation_id: u64) -> keel::Submission {
    keel::Submission {
        kind,
        version: 1,
        session_id: 0,
        correlation_id,
    }
}

/// A key-value processor whose responses depend on state: put, add (rejects on overflow),
/// delete (rejects unknown keys), and a panic op. BTreeMap keeps iteration deterministic.
#[derive(Default, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    pub entries: std::collections::BTreeMap<u32, u64>,
    pub last_timestamp_ns: u64,
}

pub const KV_PUT: u16 = 10;
pub const KV_ADD: u16 = 11;
pub const KV_DELETE: u16 = 12;
pub const KV_PANIC: u16 = 13;

pub fn kv_payload(key: u32, value: u64) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&key.to_le_bytes());
    p[4..].copy_from_slice(&value.to_le_bytes());
    p
}

impl Processor for Kv {
    fn apply(&mut self, message: &Message<'_>, out: &mut Output<'_>) -> Outcome {
        let p = message.payload;
        let key = u32::from_le_bytes(p[..4].try_into().unwrap());
        let value = u64::from_le_bytes(p[4..12].try_into().unwrap());
        self.last_timestamp_ns = message.header.timestamp_ns;
        match message.header.kind {
            KV_PUT => {
                let old = self.entries.insert(key, value);
                out.encode(&old).unwrap();
                Outcome::Accepted
            }
            KV_ADD => {
                let entry = self.entries.entry(key).or_default();
                match entry.checked_add(value) {
                    Some(v) => {
                        *entry = v;
                        out.encode(&v).unwrap();
                        Outcome::Accepted
                    }
                    None => Outcome::Rejected(2),
                }
            }
            KV_DELETE => match self.entries.remove(&key) {
                Some(v) => {
                    out.encode(&v).unwrap();
                    Outcome::Accepted
                }
                None => Outcome::Rejected(3),
            },
            KV_PANIC => {
                self.entries.insert(key, 0);
                panic!("kv panic on key {key}");
            }
            _ => Outcome::Rejected(1),
        }
    }

    fn state_hash(&self) -> u64 {
        let mut bytes = Vec::new();
        save_serde(self, &mut bytes).unwrap();
        u64::from(crc32c::crc32c(&bytes)) | (bytes.len() as u64) << 32
    }

    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        save_serde(self, out)
    }

    fn load_state(&mut self, _schema_version: u32, bytes: &[u8]) -> Result<(), StateError> {
        *self = load_serde(bytes)?;
        Ok(())
    }
}
