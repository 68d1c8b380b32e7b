//! Batches of preprocessed PALM images as dfdx tensors, with an in-memory and an
//! optional on-disk cache.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use dfdx::shapes::Const;
use dfdx::tensor::{Cpu, Tensor, TensorFromVec};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use super::augment::Augment;
use super::error::{DataError, Result};
use super::image::{decode_to_chw, DecodeMode};
use super::palm::{ImageSource, Sample, Split};
use super::transform::{normalize, ChannelOrder};

/// A batch of images: `(batch, 3, S, S)` floats in [-1, 1].
pub type ImageBatch<const S: usize> = Tensor<(usize, Const<3>, Const<S>, Const<S>), f32, Cpu>;
/// A batch of binary labels: `(batch, 1)`, 1.0 = pathologic myopia.
pub type LabelBatch = Tensor<(usize, Const<1>), f32, Cpu>;

/// How images are turned into tensors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadOptions {
    /// JPEG decoding: DCT-scaled (fast, default) or full size (the course's path).
    pub decode: DecodeMode,
    /// Channel order of the tensors; BGR by default like the course.
    pub channel_order: ChannelOrder,
    /// Training-time augmentation; `None` (default) disables it. Applied only by
    /// [`PalmLoader::train_epoch`], never by [`PalmLoader::in_order`].
    pub augment: Option<Augment>,
    /// Folder for an on-disk cache of preprocessed images, keyed by image path,
    /// file size, modification time, target size, decode mode and channel order.
    /// `None` (default): memory cache only.
    pub disk_cache: Option<PathBuf>,
    /// Show an `indicatif` progress bar while preloading.
    pub progress: bool,
}

/// Preprocesses and serves one split; `S` is the square image side (224 in the course).
///
/// Each image is decoded once; its preprocessed bytes (CHW, `3 * S * S`) are
/// kept in memory, so later epochs do not decode again.
pub struct PalmLoader<const S: usize = 224> {
    samples: Vec<Sample>,
    opts: LoadOptions,
    cache: Vec<OnceLock<Arc<[u8]>>>,
}

impl<const S: usize> PalmLoader<S> {
    /// A loader over `split`'s samples (in the split's order).
    pub fn new(split: &Split, opts: LoadOptions) -> Self {
        Self::from_samples(split.samples.clone(), opts)
    }

    /// A loader over arbitrary samples.
    pub fn from_samples(samples: Vec<Sample>, opts: LoadOptions) -> Self {
        let cache = (0..samples.len()).map(|_| OnceLock::new()).collect();
        PalmLoader { samples, opts, cache }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The samples, in loader order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The options.
    pub fn options(&self) -> &LoadOptions {
        &self.opts
    }

    /// Number of images already in the memory cache.
    pub fn cached(&self) -> usize {
        self.cache.iter().filter(|c| c.get().is_some()).count()
    }

    /// Decodes every image not yet cached, in parallel (rayon). Returns the first
    /// error in sample order, if any.
    pub fn preload(&self) -> Result<()> {
        let todo: Vec<usize> = (0..self.len()).filter(|&i| self.cache[i].get().is_none()).collect();
        let bar = progress_bar(self.opts.progress, todo.len() as u64, "decoding");
        let res: Vec<Result<()>> = todo
            .par_iter()
            .map(|&i| {
                let r = self.bytes(i).map(|_| ());
                bar.inc(1);
                r
            })
            .collect();
        bar.finish_and_clear();
        res.into_iter().collect()
    }

    /// Preprocessed bytes of sample `i` (CHW, channel order per options), from
    /// the cache or decoded now.
    pub fn bytes(&self, i: usize) -> Result<Arc<[u8]>> {
        if let Some(b) = self.cache[i].get() {
            return Ok(b.clone());
        }
        let b: Arc<[u8]> = self.load(&self.samples[i])?.into();
        Ok(self.cache[i].get_or_init(|| b).clone())
    }

    /// Sample `i` as CHW floats in [-1, 1] (no augmentation).
    pub fn image(&self, i: usize) -> Result<Vec<f32>> {
        Ok(self.bytes(i)?.iter().map(|&b| normalize(b)).collect())
    }

    fn load(&self, s: &Sample) -> Result<Vec<u8>> {
        let key = match &self.opts.disk_cache {
            Some(dir) => Some((dir, cache_key(&s.source, S, &self.opts)?)),
            None => None,
        };
        if let Some((dir, key)) = &key {
            if let Some(b) = disk_get(dir, key, 3 * S * S) {
                return Ok(b);
            }
        }
        let raw = s.source.read()?;
        let chw = decode_to_chw(
            &raw,
            &s.source.display_path(),
            S,
            self.opts.decode,
            self.opts.channel_order,
        )?;
        if let Some((dir, key)) = &key {
            disk_put(dir, key, &chw)?;
        }
        Ok(chw)
    }

    /// The course's training order for one epoch: a permutation of all samples
    /// drawn from a generator seeded by `(seed, epoch)`, so every epoch is
    /// reshuffled and the same seed gives the same orders. Augmentation (when
    /// enabled in the options) is seeded the same way, per epoch and sample.
    pub fn train_epoch<'a>(&'a self, dev: &'a Cpu, batch_size: usize, seed: u64, epoch: u64) -> Result<Batches<'a, S>> {
        let order = epoch_order(self.len(), seed, epoch);
        let aug = self.opts.augment.map(|a| (a, mix(seed, epoch ^ 0xA5A5_5A5A_0F0F_F0F0)));
        Batches::new(self, dev, batch_size, order, aug)
    }

    /// All samples in order (validation), never augmented.
    pub fn in_order<'a>(&'a self, dev: &'a Cpu, batch_size: usize) -> Result<Batches<'a, S>> {
        Batches::new(self, dev, batch_size, (0..self.len()).collect(), None)
    }

    /// Batches over an explicit order of sample indices (no augmentation).
    pub fn with_order<'a>(&'a self, dev: &'a Cpu, batch_size: usize, order: Vec<usize>) -> Result<Batches<'a, S>> {
        if let Some(&bad) = order.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::InvalidArgument(format!(
                "sample index {bad} out of range 0..{}",
                self.len()
            )));
        }
        Batches::new(self, dev, batch_size, order, None)
    }
}

/// The permutation [`PalmLoader::train_epoch`] uses for `n` samples.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, epoch));
    order.shuffle(&mut rng);
    order
}

/// SplitMix64-style mixing of two words into one seed.
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Iterator of `(images, labels)` batches; the last short batch is kept.
pub struct Batches<'a, const S: usize> {
    loader: &'a PalmLoader<S>,
    dev: &'a Cpu,
    batch_size: usize,
    order: Vec<usize>,
    pos: usize,
    augment: Option<(Augment, u64)>,
}

impl<'a, const S: usize> Batches<'a, S> {
    fn new(
        loader: &'a PalmLoader<S>,
        dev: &'a Cpu,
        batch_size: usize,
        order: Vec<usize>,
        augment: Option<(Augment, u64)>,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(DataError::InvalidArgument("batch size must be at least 1".into()));
        }
        Ok(Batches {
            loader,
            dev,
            batch_size,
            order,
            pos: 0,
            augment,
        })
    }

    /// The sample indices this iterator visits, in order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Number of batches in total (including the last short one).
    pub fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }
}

impl<const S: usize> Iterator for Batches<'_, S> {
    type Item = Result<(ImageBatch<S>, LabelBatch)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.order.len() {
            return None;
        }
        let end = (self.pos + self.batch_size).min(self.order.len());
        let idx = &self.order[self.pos..end];
        self.pos = end;
        let n = idx.len();
        let plane = 3 * S * S;
        let loaded: Vec<Result<Vec<f32>>> = idx
            .par_iter()
            .map(|&i| {
                let mut img = self.loader.image(i)?;
                if let Some((aug, seed)) = &self.augment {
                    aug.apply(&mut img, 3, S, mix(*seed, i as u64));
                }
                Ok(img)
            })
            .collect();
        let mut data = Vec::with_capacity(n * plane);
        for r in loaded {
            match r {
                Ok(v) => data.extend_from_slice(&v),
                Err(e) => return Some(Err(e)),
            }
        }
        let labels: Vec<f32> = idx.iter().map(|&i| self.loader.samples[i].label as f32).collect();
        let x = self.dev.tensor_from_vec(data, (n, Const::<3>, Const::<S>, Const::<S>));
        let y = self.dev.tensor_from_vec(labels, (n, Const::<1>));
        Some(Ok((x, y)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.order.len() - self.pos).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl<const S: usize> ExactSizeIterator for Batches<'_, S> {}

pub(crate) fn progress_bar(show: bool, len: u64, msg: &'static str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(msg);
    bar
}

/// The disk-cache key: source identity, size, mtime, and preprocessing options.
fn cache_key(src: &ImageSource, s: usize, opts: &LoadOptions) -> Result<String> {
    let (file, member) = match src {
        ImageSource::File(p) => (p.clone(), String::new()),
        ImageSource::Zip { archive, member } => (zip_file_of(&archive.path), member.clone()),
    };
    let abs = std::fs::canonicalize(&file).unwrap_or(file.clone());
    let md = std::fs::metadata(&abs).map_err(|e| DataError::io(&abs, e))?;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!(
        "v1|{}|{}|{}|{}|{}|{:?}|{:?}",
        abs.display(),
        member,
        md.len(),
        mtime,
        s,
        opts.decode,
        opts.channel_order
    ))
}

/// The real file behind an archive display path (`a.zip/inner.zip` -> `a.zip`).
fn zip_file_of(p: &Path) -> PathBuf {
    let mut cur = p.to_path_buf();
    while !cur.is_file() {
        match cur.parent() {
            Some(parent) if parent != cur => cur = parent.to_path_buf(),
            _ => return p.to_path_buf(),
        }
    }
    cur
}

fn key_file(dir: &Path, key: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    dir.join(format!("{:016x}.chw", h.finish()))
}

/// Reads a cache entry; the file stores its full key, so a hash collision or a
/// stale entry is a miss, never wrong data.
fn disk_get(dir: &Path, key: &str, len: usize) -> Option<Vec<u8>> {
    let b = std::fs::read(key_file(dir, key)).ok()?;
    let kl = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let stored = b.get(4..4 + kl)?;
    let data = b.get(4 + kl..)?;
    (stored == key.as_bytes() && data.len() == len).then(|| data.to_vec())
}

fn disk_put(dir: &Path, key: &str, data: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let path = key_file(dir, key);
    let mut buf = Vec::with_capacity(4 + key.len() + data.len());
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(data);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| DataError::io(dir, e))?;
    std::io::Write::write_all(&mut tmp, &buf).map_err(|e| DataError::io(&path, e))?;
    tmp.persist(&path).map_err(|e| DataError::io(&path, e.error))?;
    Ok(())
}
