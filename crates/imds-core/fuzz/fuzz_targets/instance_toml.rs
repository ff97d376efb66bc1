//! Fuzz target `instance_toml`: see `imds_core_fuzz::instance_toml` for the input layout and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| imds_core_fuzz::instance_toml(data));
