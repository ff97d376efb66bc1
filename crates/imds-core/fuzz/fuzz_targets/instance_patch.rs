//! Fuzz target `instance_patch`: see `imds_core_fuzz::instance_patch` for the input layout and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| imds_core_fuzz::instance_patch(data));
