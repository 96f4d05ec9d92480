//! Decides at compile time whether the PostgreSQL tests in `tests/` run.
//!
//! With `DATABASE_URL` set, or under `CI=true` (where a missing URL must fail
//! the PostgreSQL tests, never skip them), this emits `cfg(postgres_tests)`.
//! Without it the tests carry `#[cfg_attr(not(postgres_tests), ignore = "…")]`,
//! so `cargo test` lists them as `ignored, set DATABASE_URL …` and counts them
//! in its summary instead of printing `ok` for a test that did nothing.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=DATABASE_URL");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rustc-check-cfg=cfg(postgres_tests)");
    let url = std::env::var_os("DATABASE_URL").is_some_and(|url| !url.is_empty());
    let ci = std::env::var("CI").is_ok_and(|ci| ci == "true");
    if url || ci {
        println!("cargo::rustc-cfg=postgres_tests");
    }
}
