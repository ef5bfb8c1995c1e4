//! Field checks shared by every inbound parser (`inbound`, `kitchen`): reading a frame into a
//! message struct with a precise error, identifier and nesting limits, table ids, and the
//! `ProtoError` all of them return.

use serde::Deserialize;
use serde_json::Value;

/// Longest identifier (posReference, terminalId, tableId, ...) the hub accepts.
pub const MAX_ID_LEN: usize = 128;
/// Deepest nesting of arrays and objects a frame may have, counting the frame itself. Far
/// below `serde_json`'s recursion limit (128) so that everything accepted reads back intact,
/// also wrapped in the replies, `STATE` and the upstream envelopes (a few levels each).
pub const MAX_DEPTH: usize = 64;

/// Why a frame was refused; becomes `ERROR {code, message, requestId}`.
#[derive(Debug, Clone)]
pub struct ProtoError {
    pub code: &'static str,
    pub message: String,
    pub request_id: Option<Value>,
}

impl ProtoError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ProtoError {
            code,
            message: message.into(),
            request_id: None,
        }
    }
}

/// A table (or floor) id: a string or an integer, kept as sent and keyed canonically.
#[derive(Debug, Clone, PartialEq)]
pub struct TableId {
    /// The JSON text as the terminal sent it (`5` or `"T5"`).
    pub json: String,
    /// The key it is stored under (`5`, `T5`).
    pub key: String,
}

impl TableId {
    pub(crate) fn from_value(field: &str, v: &Value) -> Result<TableId, String> {
        match v {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_ID_LEN => Ok(TableId {
                json: v.to_string(),
                key: s.clone(),
            }),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(TableId {
                json: n.to_string(),
                key: n.to_string(),
            }),
            _ => Err(format!(
                "`{field}` must be a non-empty string or an integer"
            )),
        }
    }
}

/// The canonical key of a stored table id's JSON text (`"T5"` -> `T5`, `5` -> `5`).
pub fn table_key_of(json: &str) -> String {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::String(s)) => s,
        _ => json.to_string(),
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> ProtoError {
    ProtoError::new("invalid_message", msg)
}

pub(crate) fn fields<'a, T: Deserialize<'a>>(ty: &str, text: &'a str) -> Result<T, ProtoError> {
    serde_json::from_str(text).map_err(|e| {
        // serde's wording ("missing field `x`", "invalid type: ...") is precise; drop the
        // line/column noise, which is always 1:N for a single-line frame.
        let m = e.to_string();
        let m = m.split(" at line ").next().unwrap_or(&m).to_string();
        invalid(format!("{ty}: {m}"))
    })
}

pub(crate) fn check_id(field: &str, v: &str) -> Result<(), ProtoError> {
    if v.is_empty() || v.len() > MAX_ID_LEN || v.chars().any(char::is_control) {
        return Err(invalid(format!(
            "`{field}` must be 1-{MAX_ID_LEN} characters without control characters"
        )));
    }
    Ok(())
}

/// Deepest nesting of arrays and objects in the JSON text `text` (brackets inside strings do
/// not count). One pass over the bytes, no recursion: any depth is measured safely.
pub fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}
