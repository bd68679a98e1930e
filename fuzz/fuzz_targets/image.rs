#![no_main]
// A shim: the harness lives in herd_core::testing so it is compiled and tested with the crate.
libfuzzer_sys::fuzz_target!(|data: &[u8]| herd_core::testing::fuzz_image(data));
