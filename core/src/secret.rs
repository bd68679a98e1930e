//! Comparing a presented secret (API key, admin key, fleet key) with the expected one in time
//! that does not depend on where they differ, so timing says nothing about a guess. Used by the
//! router's key checks, core's fleet-key check on reports, and herd-node's proxy.

use subtle::ConstantTimeEq;

/// Whether `presented` equals `expected`, compared with `subtle` (whose barriers keep the
/// compiler from turning the comparison back into an early exit); only the lengths' equality
/// can be learnt from the time taken.
pub fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    presented.ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn equal_only_when_identical() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(same_secret(b"", b""));
        for other in [&b"s3cre"[..], b"s3cretX", b"S3cret", b"", b"s3cre\0"] {
            assert!(!same_secret(other, b"s3cret"), "{other:?}");
        }
    }
}
