//! Helpers shared by the reference tests: random inputs, tolerant comparison, finite differences.
#![allow(dead_code)]

use rand::{rngs::StdRng, Rng};

/// `n` values uniform in [-1, 1).
pub fn random_vec(rng: &mut StdRng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// Asserts `actual ≈ expected` element by element, to `tol` relative to `1 + |expected|`.
pub fn assert_close(actual: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * (1.0 + e.abs()),
            "{what}: element {i}: got {a}, expected {e}"
        );
    }
}

/// Central differences of `loss(v) = Σ coeff · f(v)` with respect to every element of `v`.
pub fn numeric_grad(v: &[f64], coeff: &[f64], f: &dyn Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
    let eps = 1e-6;
    let mut v = v.to_vec();
    (0..v.len())
        .map(|i| {
            let orig = v[i];
            v[i] = orig + eps;
            let up: f64 = f(&v).iter().zip(coeff).map(|(a, b)| a * b).sum();
            v[i] = orig - eps;
            let down: f64 = f(&v).iter().zip(coeff).map(|(a, b)| a * b).sum();
            v[i] = orig;
            (up - down) / (2.0 * eps)
        })
        .collect()
}
