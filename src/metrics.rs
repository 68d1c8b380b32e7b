//! Binary-classification metrics: confusion matrix at a threshold, accuracy, sensitivity,
//! specificity, and the rank-based (Mann–Whitney) ROC AUC with ties counted as one half.

use serde::{Deserialize, Serialize};

/// Confusion matrix of a binary classifier (positive = pathologic myopia, label 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// Positives predicted positive.
    pub tp: usize,
    /// Negatives predicted positive.
    pub fp: usize,
    /// Negatives predicted negative.
    pub tn: usize,
    /// Positives predicted negative.
    pub fn_: usize,
}

impl Confusion {
    /// Counts predictions `prob >= threshold` against `labels` (non-zero = positive).
    ///
    /// # Panics
    /// When `probs` and `labels` differ in length.
    pub fn from_probs(probs: &[f32], labels: &[u8], threshold: f32) -> Self {
        assert_eq!(probs.len(), labels.len(), "probabilities and labels differ in length");
        let mut c = Confusion::default();
        for (&p, &l) in probs.iter().zip(labels) {
            match (p >= threshold, l != 0) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        c
    }

    /// Number of samples.
    pub fn total(&self) -> usize {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// (tp + tn) / total; `None` when empty.
    pub fn accuracy(&self) -> Option<f64> {
        ratio(self.tp + self.tn, self.total())
    }

    /// Sensitivity (recall, true-positive rate) tp / (tp + fn); `None` without positives.
    pub fn sensitivity(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Specificity (true-negative rate) tn / (tn + fp); `None` without negatives.
    pub fn specificity(&self) -> Option<f64> {
        ratio(self.tn, self.tn + self.fp)
    }

    /// The matrix as rows = true class (0, 1), columns = predicted class (0, 1).
    pub fn matrix(&self) -> [[usize; 2]; 2] {
        [[self.tn, self.fp], [self.fn_, self.tp]]
    }
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Area under the ROC curve from scores (higher = more likely positive) and labels
/// (non-zero = positive), computed from ranks: the probability that a random positive
/// scores above a random negative, ties counting one half. `None` when either class is
/// missing or a score is NaN.
///
/// # Panics
/// When `scores` and `labels` differ in length.
pub fn auc(scores: &[f32], labels: &[u8]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "scores and labels differ in length");
    if scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let n_pos = labels.iter().filter(|&&l| l != 0).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (1-based, mid-ranked) ranks of the positives.
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        let pos_in_group = idx[i..=j].iter().filter(|&&k| labels[k] != 0).count();
        rank_sum_pos += mid_rank * pos_in_group as f64;
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

/// Points of the ROC curve, (false-positive rate, true-positive rate), from (0, 0) to
/// (1, 1), one point per distinct score (thresholds from high to low). Empty when a class
/// is missing.
pub fn roc_curve(scores: &[f32], labels: &[u8]) -> Vec<(f64, f64)> {
    let n_pos = labels.iter().filter(|&&l| l != 0).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Vec::new();
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if labels[idx[i]] != 0 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        pts.push((fp as f64 / n_neg as f64, tp as f64 / n_pos as f64));
    }
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_counts_and_rates_by_hand() {
        // probs:  .9 .8 .3 .6 .1 .5 ; labels: 1 0 1 0 0 1 ; threshold .5
        // predicted: 1 1 0 1 0 1 → tp = 2 (idx 0, 5), fp = 2 (1, 3), tn = 1 (4), fn = 1 (2)
        let c = Confusion::from_probs(&[0.9, 0.8, 0.3, 0.6, 0.1, 0.5], &[1, 0, 1, 0, 0, 1], 0.5);
        assert_eq!(
            c,
            Confusion {
                tp: 2,
                fp: 2,
                tn: 1,
                fn_: 1
            }
        );
        assert_eq!(c.accuracy(), Some(0.5));
        assert_eq!(c.sensitivity(), Some(2.0 / 3.0));
        assert_eq!(c.specificity(), Some(1.0 / 3.0));
        assert_eq!(c.matrix(), [[1, 2], [1, 2]]);
    }

    #[test]
    fn undefined_rates_are_none() {
        let c = Confusion::from_probs(&[0.2, 0.7], &[0, 0], 0.5);
        assert_eq!(c.sensitivity(), None);
        assert_eq!(c.specificity(), Some(0.5));
        assert_eq!(Confusion::default().accuracy(), None);
    }

    #[test]
    fn auc_without_ties_by_hand() {
        // positives 0.8, 0.4; negatives 0.6, 0.2, 0.1.
        // pairs (pos > neg): 0.8 beats all 3; 0.4 beats 0.2 and 0.1 → 5 of 6.
        let a = auc(&[0.8, 0.6, 0.4, 0.2, 0.1], &[1, 0, 1, 0, 0]).unwrap();
        assert!((a - 5.0 / 6.0).abs() < 1e-12, "{a}");
    }

    #[test]
    fn auc_with_ties_counts_half() {
        // positives 0.5, 0.9; negatives 0.5, 0.1.
        // pairs: (0.5 vs 0.5) tie = 0.5, (0.5 vs 0.1) = 1, (0.9 vs both) = 2 → 3.5 / 4.
        let a = auc(&[0.5, 0.5, 0.9, 0.1], &[1, 0, 1, 0]).unwrap();
        assert!((a - 0.875).abs() < 1e-12, "{a}");
        // All scores equal: 0.5.
        assert_eq!(auc(&[0.3; 4], &[1, 0, 1, 0]), Some(0.5));
        // Perfectly wrong: 0.
        assert_eq!(auc(&[0.1, 0.9], &[1, 0]), Some(0.0));
    }

    #[test]
    fn auc_needs_both_classes() {
        assert_eq!(auc(&[0.1, 0.2], &[1, 1]), None);
        assert_eq!(auc(&[f32::NAN, 0.2], &[1, 0]), None);
    }

    #[test]
    fn roc_points_by_hand() {
        // scores .9(1) .7(0) .7(1) .2(0): thresholds .9 → (0, .5); .7 → (.5, 1); .2 → (1, 1)
        let r = roc_curve(&[0.9, 0.7, 0.7, 0.2], &[1, 0, 1, 0]);
        assert_eq!(r, vec![(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]);
    }
}
