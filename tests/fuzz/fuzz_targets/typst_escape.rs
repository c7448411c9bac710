//! Arbitrary text through the Typst escapers: `escape_markup` must leave no markup
//! character unescaped, lose no text, and parse (alone and inside strong text, a heading and
//! a content block) as text only; `string_literal` must parse back to the same string. The
//! checks are those of the property tests, in `tests/common/escape.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rulebook::report::typst::{escape_markup, string_literal};

#[path = "../../common/escape.rs"]
mod escape;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    escape::check_markup(s, &escape_markup(s));
    escape::check_literal(s, &string_literal(s));
});
