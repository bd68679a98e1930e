//! The little of PNG the router reads: whether bytes are a PNG, and its size from the `IHDR`
//! chunk (the first one, by the format's rule), without decoding a pixel.

/// The eight bytes every PNG starts with.
pub const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Whether `bytes` start like a PNG.
pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(&SIGNATURE)
}

/// Width and height of the PNG in `bytes`, from its `IHDR` chunk; `None` when `bytes` do not start
/// with a PNG signature and a well-formed `IHDR` (both sides at least 1, as the format requires).
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if !is_png(bytes) || bytes.len() < 24 {
        return None;
    }
    let len = u32::from_be_bytes(bytes[8..12].try_into().ok()?);
    if len != 13 || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let height = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    (width > 0 && height > 0 && width <= i32::MAX as u32 && height <= i32::MAX as u32).then_some((width, height))
}
