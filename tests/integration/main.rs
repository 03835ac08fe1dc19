//! Integration tests: real namespaces and veths, built in private sandboxes,
//! checked against vethtrace's exact answer. They need root; without it each
//! test prints why it skips.

mod cases;
mod cli;
mod watch;
mod runtimes;
