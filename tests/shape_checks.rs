//! Shape errors are build errors: each `ui/fail_*.rs` must fail to compile with the message in
//! its `.stderr` file, and `ui/pass_*.rs` must build. The pass case also makes trybuild run a
//! real `cargo build` (checks in const blocks do not fire under `cargo check`).
//!
//! The compiler quotes the standard library's source in its notes when the toolchain has the
//! `rust-src` component (which `evcxr_jupyter --install` adds) and omits it otherwise, so the
//! expected output comes in two versions: `ui/` without it, `ui-rust-src/` with it. The message
//! lines themselves are the same in both.

use std::path::Path;
use std::process::Command;

/// True when the active toolchain has the standard library's source (`rust-src`).
fn toolchain_has_rust_src() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib/src/rust/library/core/src/panic.rs")
        .is_file()
}

#[test]
fn shape_checks_fire_at_build_time() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass_*.rs");
    if toolchain_has_rust_src() {
        t.compile_fail("tests/ui-rust-src/fail_*.rs");
    } else {
        t.compile_fail("tests/ui/fail_*.rs");
    }
}
