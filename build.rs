//! Decides at compile time whether the PostgreSQL and etcd tests in `tests/`
//! run.
//!
//! With `DATABASE_URL` set, or under `CI=true` (where a missing URL must fail
//! the PostgreSQL tests, never skip them), this emits `cfg(postgres_tests)`;
//! likewise `cfg(etcd_tests)` with `ETCD_ENDPOINTS` or `CI=true`.
//! Without them the tests carry `#[cfg_attr(not(postgres_tests), ignore = "…")]`
//! (or `etcd_tests`), so `cargo test` lists them as `ignored, set DATABASE_URL …`
//! and counts them in its summary instead of printing `ok` for a test that did
//! nothing.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=DATABASE_URL");
    println!("cargo::rerun-if-env-changed=ETCD_ENDPOINTS");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rustc-check-cfg=cfg(postgres_tests)");
    println!("cargo::rustc-check-cfg=cfg(etcd_tests)");
    let set = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    let ci = std::env::var("CI").is_ok_and(|ci| ci == "true");
    if set("DATABASE_URL") || ci {
        println!("cargo::rustc-cfg=postgres_tests");
    }
    if set("ETCD_ENDPOINTS") || ci {
        println!("cargo::rustc-cfg=etcd_tests");
    }
}
