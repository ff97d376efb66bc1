//! Fuzz target `control_bodies`: see `imds_server_fuzz::control_bodies` for the input layout and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| imds_server_fuzz::control_bodies(data));
