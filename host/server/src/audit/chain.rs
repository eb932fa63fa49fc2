//! The chain: what a record's hash covers, what a checkpoint signs, and the
//! walk that checks both, shared by `arbiter audit verify` and the server's
//! start-up check.

use arbiter_engine::signature::key_id;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::AuditState;

/// The `prev` of the first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The `kind` of a checkpoint record.
pub(crate) const CHECKPOINT: &str = "checkpoint";
/// Domain separation: a checkpoint signature is never valid as a bundle
/// signature by the same key, nor as anything else.
const CHECKPOINT_CONTEXT: &[u8] = b"arbiter audit checkpoint v1\n";

/// Why a log does not verify. Record numbers count from 1, checkpoints
/// included (they are records of the chain).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("record {record}: not a JSON record")]
    NotJson { record: u64 },
    #[error("record {record}: sequence number is not {record}")]
    Sequence { record: u64 },
    #[error("record {record}: does not chain to the record before")]
    Chain { record: u64 },
    #[error("record {record}: hash mismatch (edited)")]
    Hash { record: u64 },
    #[error("record {record}: checkpoint count/head do not match the chain before it")]
    CheckpointMismatch { record: u64 },
    #[error("record {record}: checkpoint has no valid `{field}`")]
    MalformedCheckpoint { record: u64, field: &'static str },
    /// The key id is the log's text: shown bounded, escaped (the report
    /// goes to a terminal).
    #[error(
        "record {record}: checkpoint signed by key {}, which is not among the keys given",
        arbiter_types::excerpt(.key_id, 80)
    )]
    UnknownKey { record: u64, key_id: String },
    #[error(
        "record {record}: checkpoint signature does not verify (the chain was recomputed, or the checkpoint edited, without the key)"
    )]
    BadSignature { record: u64 },
    #[error(
        "{records} records follow the checkpoint at record {checkpoint}, which promised the next within {every}: a checkpoint is missing"
    )]
    MissingCheckpoint { checkpoint: u64, every: u64, records: u64 },
    #[error("no signed checkpoint in {records} records: nothing in the log is authenticated")]
    NoCheckpoint { records: u64 },
    #[error("the log ends at record {records}, but its state file names record {expected}: records were cut")]
    Truncated { records: u64, expected: u64 },
    #[error("record {record}: not the record the state file names (replaced or rewritten)")]
    StateMismatch { record: u64 },
    #[error("the state file: {0}")]
    StateFile(Box<VerifyError>),
}

/// What a log that verified holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Records, checkpoints included.
    pub records: u64,
    /// The file ends in a partial record: a crash mid-write, never
    /// acknowledged; everything before it verified.
    pub torn_tail: bool,
    /// Checkpoint records (their signatures checked only with keys).
    pub checkpoints: u64,
    /// With keys: the last checkpoint, whose signature covers every record
    /// before it. Records after it (the unsigned tail) could be cut, or
    /// rewritten with a recomputed chain, without detection.
    pub signed_through: Option<u64>,
    /// The state file's record, found in the log.
    pub state_record: Option<u64>,
}

impl Verified {
    /// Records not covered by a checked signature.
    pub fn unsigned_tail(&self) -> u64 {
        self.records - self.signed_through.unwrap_or(0)
    }
}

/// JSON with every object's keys sorted, compact: the bytes a record's
/// hash covers. (serde_json keeps insertion order when its
/// `preserve_order` feature is on, which a workspace-wide build turns on
/// through another crate: hashing `to_string()` would make a log's
/// validity depend on how the verifier was built.)
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn write_object(map: &Map<String, Value>, out: &mut String) {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(key.as_str()).to_string());
        out.push(':');
        write_canonical(value, out);
    }
    out.push('}');
}

/// The hash of a record without its `hash` field.
pub(crate) fn record_hash(record: &Map<String, Value>) -> String {
    let mut text = String::new();
    write_object(record, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// What a checkpoint signs: the chain up to record `count`, whose hash is
/// `head`, and the promise of the next checkpoint within `every` records.
/// Variable fields are length-prefixed, so no two inputs share a payload.
fn payload(count: u64, head: &str, every: u64, at: &str) -> Vec<u8> {
    let mut payload = CHECKPOINT_CONTEXT.to_vec();
    payload.extend_from_slice(&count.to_be_bytes());
    payload.extend_from_slice(&every.to_be_bytes());
    for field in [head, at] {
        payload.extend_from_slice(&(field.len() as u64).to_be_bytes());
        payload.extend_from_slice(field.as_bytes());
    }
    payload
}

/// A checkpoint record (without its chain fields).
pub(crate) fn checkpoint(key: &SigningKey, count: u64, head: &str, every: u64, at: String) -> Map<String, Value> {
    let signature = key.sign(&payload(count, head, every, &at));
    let mut record = Map::new();
    record.insert("kind".into(), CHECKPOINT.into());
    record.insert("count".into(), count.into());
    record.insert("head".into(), head.into());
    record.insert("every".into(), every.into());
    record.insert("at".into(), at.into());
    record.insert("key_id".into(), key_id(&key.verifying_key()).into());
    record.insert("signature".into(), hex::encode(signature.to_bytes()).into());
    record
}

pub(crate) fn is_checkpoint(record: &Map<String, Value>) -> bool {
    record.get("kind").and_then(Value::as_str) == Some(CHECKPOINT)
}

/// Checks record `record_no` as a checkpoint: `count`/`head` name the
/// record before it and, with keys, the signature verifies. Returns the
/// `every` it promises when its signature was checked.
fn check_checkpoint(
    keys: &[VerifyingKey],
    record_no: u64,
    record: &Map<String, Value>,
) -> Result<Option<u64>, VerifyError> {
    let prev = record.get("prev").and_then(Value::as_str);
    let head = record.get("head").and_then(Value::as_str).filter(|&head| Some(head) == prev);
    let count = record.get("count").and_then(Value::as_u64).filter(|&count| count == record_no - 1);
    let (Some(head), Some(count)) = (head, count) else {
        return Err(VerifyError::CheckpointMismatch { record: record_no });
    };
    if keys.is_empty() {
        return Ok(None);
    }
    let malformed = |field| VerifyError::MalformedCheckpoint { record: record_no, field };
    let text = |field| record.get(field).and_then(Value::as_str).ok_or(malformed(field));
    let every = record.get("every").and_then(Value::as_u64).filter(|&n| n > 0).ok_or(malformed("every"))?;
    let (at, signer) = (text("at")?, text("key_id")?);
    let signature: [u8; 64] = text("signature")
        .ok()
        .and_then(|s| hex::decode(s).ok())
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(malformed("signature"))?;
    let key = keys
        .iter()
        .find(|k| key_id(k) == signer)
        .ok_or_else(|| VerifyError::UnknownKey { record: record_no, key_id: signer.to_owned() })?;
    let payload = payload(count, head, every, at);
    key.verify_strict(&payload, &Signature::from_bytes(&signature))
        .map_err(|_| VerifyError::BadSignature { record: record_no })?;
    Ok(Some(every))
}

/// Parses line `record_no` as a record and checks that it is
/// self-consistent: its number, and a hash that covers its body. Returns
/// the record (without `hash`) and its hash.
fn parse(line: &str, record_no: u64) -> Result<(Map<String, Value>, String), VerifyError> {
    let mut record: Map<String, Value> =
        serde_json::from_str(line).map_err(|_| VerifyError::NotJson { record: record_no })?;
    let hash = record.remove("hash");
    if record.get("seq").and_then(Value::as_u64) != Some(record_no) {
        return Err(VerifyError::Sequence { record: record_no });
    }
    let actual = record_hash(&record);
    if hash.as_ref().and_then(Value::as_str) != Some(actual.as_str()) {
        return Err(VerifyError::Hash { record: record_no });
    }
    Ok((record, actual))
}

/// Checks a record found without walking the chain to it (the one a state
/// file names): its hash and, if it is a checkpoint, its signature.
/// Returns a walker positioned just after it.
pub(crate) fn resume_at<'k>(keys: &'k [VerifyingKey], record_no: u64, line: &str) -> Result<Walker<'k>, VerifyError> {
    let (record, hash) = parse(line, record_no)?;
    let mut walker = Walker::new(keys);
    if is_checkpoint(&record) {
        walker.checkpoints = 1;
        walker.signed = check_checkpoint(keys, record_no, &record)?.map(|every| (record_no, every));
    }
    walker.seq = record_no;
    walker.prev = hash;
    Ok(walker)
}

/// A walk along the chain, one complete line at a time.
#[derive(Debug)]
pub(crate) struct Walker<'k> {
    keys: &'k [VerifyingKey],
    /// The last record's number and hash.
    pub(crate) seq: u64,
    pub(crate) prev: String,
    /// Records other than checkpoints since the last checkpoint (since the
    /// start of the walk without one).
    pub(crate) since: u64,
    /// The last checkpoint whose signature was checked, and the `every` it
    /// promised.
    pub(crate) signed: Option<(u64, u64)>,
    pub(crate) checkpoints: u64,
    /// A state file's record (number, hash) that the walk must meet.
    expect: Option<(u64, String)>,
    met: Option<u64>,
}

impl<'k> Walker<'k> {
    pub(crate) fn new(keys: &'k [VerifyingKey]) -> Self {
        Walker {
            keys,
            seq: 0,
            prev: GENESIS.to_owned(),
            since: 0,
            signed: None,
            checkpoints: 0,
            expect: None,
            met: None,
        }
    }

    /// Requires the walk to meet the record `state` names.
    pub(crate) fn expect(&mut self, state: &AuditState) {
        self.expect = Some((state.seq(), state.hash().to_owned()));
    }

    pub(crate) fn step(&mut self, line: &str) -> Result<(), VerifyError> {
        let record_no = self.seq + 1;
        let (record, hash) = parse(line, record_no)?;
        if record.get("prev").and_then(Value::as_str) != Some(self.prev.as_str()) {
            return Err(VerifyError::Chain { record: record_no });
        }
        if let Some((expected, expected_hash)) = &self.expect
            && *expected == record_no
        {
            if *expected_hash != hash {
                return Err(VerifyError::StateMismatch { record: record_no });
            }
            self.met = Some(record_no);
        }
        if is_checkpoint(&record) {
            let every = check_checkpoint(self.keys, record_no, &record)?;
            self.promise_kept()?;
            self.checkpoints += 1;
            if let Some(every) = every {
                self.signed = Some((record_no, every));
            }
            self.since = 0;
        } else {
            self.since += 1;
        }
        self.seq = record_no;
        self.prev = hash;
        Ok(())
    }

    /// No more records follow the last signed checkpoint than it promised.
    fn promise_kept(&self) -> Result<(), VerifyError> {
        match self.signed {
            Some((checkpoint, every)) if self.since > every => {
                Err(VerifyError::MissingCheckpoint { checkpoint, every, records: self.since })
            }
            _ => Ok(()),
        }
    }

    /// Ends the walk at the end of the log.
    pub(crate) fn finish(&self, torn_tail: bool) -> Result<Verified, VerifyError> {
        self.promise_kept()?;
        if let Some((expected, _)) = &self.expect
            && self.met.is_none()
        {
            return Err(VerifyError::Truncated { records: self.seq, expected: *expected });
        }
        Ok(Verified {
            records: self.seq,
            torn_tail,
            checkpoints: self.checkpoints,
            signed_through: self.signed.map(|(checkpoint, _)| checkpoint),
            state_record: self.met,
        })
    }
}

/// The length of a log's complete lines; a partial last line after them
/// is a torn record (a crash mid-write).
pub(crate) fn intact_len(log: &[u8]) -> usize {
    log.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// Checks a log: its chain; with `keys`, every checkpoint's signature, that
/// each came within the records the one before promised, and that there is
/// one; with `state` (its state file), that the log still holds the record
/// the state file names. The error names the first bad record.
pub fn verify(text: &str, keys: &[VerifyingKey], state: Option<&AuditState>) -> Result<Verified, VerifyError> {
    let (complete, torn) = text.split_at(intact_len(text.as_bytes()));
    // A state file accuses only if it is authentic: its record's hash is
    // checked first, and its signature before it is held against the log
    // (a record the log holds was checked on the way).
    let authentic = |keys| match state {
        Some(state) => resume_at(keys, state.seq(), &state.line())
            .map(drop)
            .map_err(|problem| VerifyError::StateFile(Box::new(problem))),
        None => Ok(()),
    };
    authentic(&[])?;
    let mut walker = Walker::new(keys);
    if let Some(state) = state {
        walker.expect(state);
    }
    for line in complete.lines() {
        walker.step(line)?;
    }
    let verified = match walker.finish(!torn.is_empty()) {
        Err(truncated @ VerifyError::Truncated { .. }) => return authentic(keys).and(Err(truncated)),
        finished => finished?,
    };
    if !keys.is_empty() && verified.records > 0 && verified.signed_through.is_none() {
        return Err(VerifyError::NoCheckpoint { records: verified.records });
    }
    Ok(verified)
}
