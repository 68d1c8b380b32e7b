//! Shape errors are build errors: each `ui/fail_*.rs` must fail to compile with the message in
//! its `.stderr` file, and `ui/pass_*.rs` must build. The pass case also makes trybuild run a
//! real `cargo build` (checks in const blocks do not fire under `cargo check`).

#[test]
fn shape_checks_fire_at_build_time() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass_*.rs");
    t.compile_fail("tests/ui/fail_*.rs");
}
