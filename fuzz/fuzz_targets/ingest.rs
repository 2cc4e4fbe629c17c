//! Request bodies as `/v1/batch` and `/v1/track` take them: parsing, validation, the
//! batch defaults' merge and enrichment. A panic is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    webhookd::fuzzing::ingest_body(body);
});
