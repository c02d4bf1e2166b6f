//! Field checks shared by request bodies; each names the field it refuses.

use crate::error::ApiError;

pub fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > max || trimmed.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_field",
            format!("{field}: must be 1 to {max} characters without control characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

pub fn hex_digest(field: &str, value: &str, len: usize) -> Result<String, ApiError> {
    let lower = value.trim().to_ascii_lowercase();
    if lower.len() != len || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid("invalid_field", format!("{field}: must be {len} hexadecimal characters")));
    }
    Ok(lower)
}

pub fn uuid(field: &str, value: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(value).map_err(|_| ApiError::bad_request(format!("{field}: not a valid id: {value:?}")))
}

/// A file name from a path: no separators, no `.` or `..`, no control characters.
pub fn file_name(field: &str, value: &str) -> Result<(), ApiError> {
    let bad = value.is_empty()
        || value.len() > 255
        || value == "."
        || value == ".."
        || value.chars().any(|c| c.is_control() || c == '/' || c == '\\');
    match bad {
        true => Err(ApiError::bad_request(format!("{field}: not a file name"))),
        false => Ok(()),
    }
}
