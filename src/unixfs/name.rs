//! Directory entry names: the one rule for which names may appear in a listing or be
//! used as a path component (DESIGN.md "Hostile names are rejected").

use super::UnixfsError;

/// The longest entry name we accept, in bytes (the usual `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// Checks that `name` is usable as a single path component: not empty, not `.` or `..`,
/// no `/` and no NUL, at most [`MAX_NAME_LEN`] bytes.
///
/// Policy: a directory *node* holding such a name is still decoded, but the entry is
/// hidden (dropped from `entries`, kept in the node's `hidden` list and logged), so one
/// hostile entry cannot make its siblings unreadable; a *lookup* of such a name fails
/// with this error before any block is fetched.
pub fn validate_name(name: &str) -> Result<(), UnixfsError> {
    let reason = if name.is_empty() {
        "empty name"
    } else if name == "." || name == ".." {
        "`.` and `..` are not entry names"
    } else if name.contains('/') {
        "contains `/`"
    } else if name.contains('\0') {
        "contains NUL"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(UnixfsError::BadName {
        name: name.chars().take(300).collect(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_rejected() {
        let long = "a".repeat(256);
        for bad in ["", ".", "..", "a/b", "../foo", "/", "a\0b", long.as_str()] {
            assert!(
                matches!(validate_name(bad), Err(UnixfsError::BadName { .. })),
                "{bad:?}"
            );
        }
        let max = "é".repeat(127); // 254 bytes
        for good in [
            "a",
            "...",
            ".hidden",
            "Portugal%2C+España=Peninsula Ibérica.txt",
            max.as_str(),
        ] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
    }
}
