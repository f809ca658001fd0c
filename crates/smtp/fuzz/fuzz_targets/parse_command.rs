//! `parse_command` never panics, every error carries a well-formed reply,
//! and what the client would send for a parsed command parses back to the
//! same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_smtp::parse_command;

fuzz_target!(|line: &[u8]| {
    match parse_command(line) {
        Ok(cmd) => {
            let text = cmd.to_string();
            let again = parse_command(text.as_bytes())
                .unwrap_or_else(|e| panic!("{text:?} does not parse back: {e}"));
            assert_eq!(again.to_string(), text);
        }
        Err(e) => {
            let wire = e.reply().to_wire();
            assert!(wire.ends_with(b"\r\n"));
            assert!((200..600).contains(&e.reply().code()));
        }
    }
});
