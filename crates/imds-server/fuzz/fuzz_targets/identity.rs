//! Fuzz target `identity`: see `imds_server_fuzz::identity` for the input layout and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| imds_server_fuzz::identity(data));
