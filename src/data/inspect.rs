//! `inspect`: what a data folder holds, and every problem in it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::error::DataError;
use super::image::{decode, DecodeMode};
use super::loader::progress_bar;
use super::palm::{scan_all, LabelsFrom, OpenOptions, Split, SplitKind};

/// Facts about one split.
#[derive(Debug, Clone)]
pub struct SplitReport {
    /// Training or validation.
    pub kind: SplitKind,
    /// Folder or archive the images came from.
    pub location: PathBuf,
    /// Where the labels came from.
    pub labels_from: LabelsFrom,
    /// Number of labelled images found.
    pub images: usize,
    /// Count per label value (0, 1).
    pub label_counts: BTreeMap<u8, usize>,
    /// Count per file-name first letter (H, N, P, V, ...).
    pub letter_counts: BTreeMap<char, usize>,
    /// Count per decoded image size (width, height).
    pub sizes: BTreeMap<(usize, usize), usize>,
}

/// The result of [`inspect`].
#[derive(Debug)]
pub struct InspectReport {
    /// The folder inspected.
    pub root: PathBuf,
    /// Splits that could be listed (possibly with problems).
    pub splits: Vec<SplitReport>,
    /// Every problem found: listing, labels and decoding.
    pub problems: Vec<DataError>,
}

impl InspectReport {
    /// True when no problem was found and both splits are there.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.splits.len() == 2
    }
}

/// Inspects `root` with default [`OpenOptions`]; decodes every image (in
/// parallel) to find corrupt ones. Never stops at the first problem.
pub fn inspect(root: impl AsRef<Path>) -> InspectReport {
    inspect_with(root, OpenOptions::default(), false)
}

/// [`inspect`] with options and an optional progress bar.
pub fn inspect_with(root: impl AsRef<Path>, opts: OpenOptions, progress: bool) -> InspectReport {
    let root = root.as_ref();
    let (t, v, mut problems) = scan_all(root, opts);
    let mut splits = Vec::new();
    for s in [t, v].into_iter().flatten() {
        let (rep, mut errs) = inspect_split(&s, progress);
        splits.push(rep);
        problems.append(&mut errs);
    }
    InspectReport {
        root: root.to_path_buf(),
        splits,
        problems,
    }
}

fn inspect_split(s: &Split, progress: bool) -> (SplitReport, Vec<DataError>) {
    let bar = progress_bar(progress, s.samples.len() as u64, "checking");
    let results: Vec<Result<(usize, usize), DataError>> = s
        .samples
        .par_iter()
        .map(|smp| {
            let r = smp.source.read().and_then(|b| {
                let img = decode(&b, &smp.source.display_path(), DecodeMode::Exact, None)?;
                Ok((img.width, img.height))
            });
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    let mut rep = SplitReport {
        kind: s.kind,
        location: s.location.clone(),
        labels_from: s.labels_from.clone(),
        images: s.samples.len(),
        label_counts: BTreeMap::new(),
        letter_counts: BTreeMap::new(),
        sizes: BTreeMap::new(),
    };
    let mut errs = Vec::new();
    for (smp, r) in s.samples.iter().zip(results) {
        *rep.label_counts.entry(smp.label).or_default() += 1;
        *rep.letter_counts
            .entry(smp.name.chars().next().unwrap_or('?'))
            .or_default() += 1;
        match r {
            Ok(sz) => *rep.sizes.entry(sz).or_default() += 1,
            Err(e) => errs.push(e),
        }
    }
    (rep, errs)
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "data folder: {}", self.root.display())?;
        for s in &self.splits {
            let name = match s.kind {
                SplitKind::Train => "training",
                SplitKind::Valid => "validation",
            };
            writeln!(f, "{name}: {} images from {}", s.images, s.location.display())?;
            writeln!(f, "  labels from: {}", s.labels_from)?;
            let lc: Vec<String> = s.label_counts.iter().map(|(l, n)| format!("{l}: {n}")).collect();
            writeln!(f, "  label counts: {}", lc.join(", "))?;
            let lt: Vec<String> = s.letter_counts.iter().map(|(l, n)| format!("{l}: {n}")).collect();
            writeln!(f, "  by name: {}", lt.join(", "))?;
            let sz: Vec<String> = s.sizes.iter().map(|((w, h), n)| format!("{w}x{h}: {n}")).collect();
            writeln!(
                f,
                "  image sizes: {}",
                if sz.is_empty() { "-".into() } else { sz.join(", ") }
            )?;
        }
        if self.problems.is_empty() {
            write!(f, "no problems found")
        } else {
            writeln!(f, "{} problem(s):", self.problems.len())?;
            for (i, p) in self.problems.iter().enumerate() {
                if i > 0 {
                    writeln!(f)?;
                }
                write!(f, "  - {p}")?;
            }
            Ok(())
        }
    }
}
