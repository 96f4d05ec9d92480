//! Compile-fail cases of both derives: every mistake a user can make gets a
//! precise error at the token to change. Each `tests/ui/NAME.rs` is named
//! after its mistake; the expected compiler output is `tests/ui/NAME.stderr`
//! (regenerate with `TRYBUILD=overwrite cargo test -p machine-derive --test
//! ui`, then read every changed file).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
