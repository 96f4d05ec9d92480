//! The package of the quickstart demo, `examples/quickstart.rs`: a package
//! of its own so that the demo builds only what it uses. It exports nothing.
#![forbid(unsafe_code)]
