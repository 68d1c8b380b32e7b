//! The synthetic iChallenge-PM stand-in: same layout, names, counts and label
//! files as the real set, with procedurally rendered colour fundus photos.
//!
//! [`generate`] writes, under `out_dir`:
//! - `PALM-Training400/` with `H0001.jpg`..`H0026.jpg`, `N0001.jpg`..`N0161.jpg`,
//!   `P0001.jpg`..`P0213.jpg` (26 / 161 / 213, as in the real set);
//! - `PALM-Validation400/` with `V0001.jpg`..`V0400.jpg`, 211 of them positive;
//! - `PALM-Validation-GT/labels.csv` (`ID,imgName,Label,Fovea_X,Fovea_Y`) and
//!   `PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx` (same columns);
//! - with `with_zips`: also `training.zip` (holding
//!   `PALM-Training400/PALM-Training400.zip`, which holds the images),
//!   `validation.zip` and `valid_gt.zip`, laid out like the course's archives.
//!
//! Each image is a plausible fundus photo: dark surround, circular field with
//! vignetting, optic disc with cup, branching vessel arcades, a darker macula
//! with the fovea at the coordinates written to the labels. What tells the
//! classes apart follows how pathologic myopia is graded (META-PM): by lesions
//! that can be seen.
//! - `P` (pathologic myopia, label 1): every image shows at least one lesion at a
//!   size clearly visible at 224×224 — a peripapillary atrophy crescent of 1.8
//!   disc radii or more, patchy chorioretinal atrophy (white patches of 1.2 disc
//!   radii or more, with pigmented rims), diffuse atrophy (a yellow haze over the posterior pole),
//!   lacquer cracks, or the pigmented edge of a posterior staphyloma — and each
//!   other lesion with a probability that grows with a severity drawn uniformly
//!   in 0..1; tessellation and a tilted disc besides.
//! - `H` (high myopia, label 0): tessellation, a tilted disc and a crescent of at
//!   most 0.4 disc radii; no chorioretinal atrophy.
//! - `N` (normal, label 0): little tessellation, a round disc, rarely a thin
//!   crescent; often the pale light reflex of a young retina along the arcades.
//!
//! Illumination (gain 0.9–1.1), colour cast, fundus pigmentation, field size,
//! framing and rotation vary at random, enough that no single image statistic
//! separates the classes. Output is deterministic for a seed (independent of the
//! thread count). By default images are 2124x2056 or 1444x1444 (a mix, like the
//! real set); [`SynthOptions::size`] forces one size for small test sets.
//!
//! ## Calibration
//!
//! The stand-in is meant to let the course's lesson play out as on the real
//! photos; `bench/side_by_side.py` measures it (the README has the per-epoch
//! table of 2026-12-05 for this version, 4):
//! - no threshold on one image statistic (mean R, G or B, brightness, contrast)
//!   reaches more than 0.65 validation accuracy (measured: 0.6150 at best), so a
//!   network has to find the lesions;
//! - the course's sigmoid LeNet (Momentum 0.001) predicts one class for every
//!   image, in palm-cnn and PaddlePaddle, every seed, as in the course;
//! - the course's AlexNet recipe (Adam 0.001, Paddle's initialisation) learns it
//!   in PaddlePaddle in all 3 seeds (epoch 5: 0.9350, 0.9225, 0.9425; epoch 1:
//!   0.875–0.900; the course: 0.9075 then 0.9250), in palm-cnn in 2 of 3 (0.9500,
//!   0.9200; seed 1 collapsed to a constant output in its first epoch).
//!
//! What moved AlexNet from always collapsing (version 2) to mostly learning:
//! lesions large enough to see at 224×224 (version 3), then 1.5× larger (version
//! 4), and an illumination range like a fundus camera's (gain 0.9–1.1). Adam's
//! first step swings the logits by hundreds whatever the images; afterwards the
//! run learns when the convolution channels that stay alive respond to a lesion.
//! `tools/collapse_probe.py` measures that per seed in PyTorch: version 3, 2 of 4
//! seeds learned within 60 steps; version 4, 7 of 8. Darker or brighter images
//! did worse; lesions 2× larger broke the 0.65 baseline (contrast: 0.6625).
//!
//! Rendering: the smooth structure is computed per pixel at a reduced
//! resolution (1/4 for images wider than 1024 px), upsampled bilinearly to full
//! size with fine sensor noise added, and encoded as JPEG (quality 90, 4:2:0);
//! images are rendered in parallel with rayon.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::error::{DataError, Result};
use super::loader::{mix, progress_bar};
use super::palm::{
    GT_DIR, GT_ZIP, LABELS_CSV, LABELS_XLSX, TRAIN_DIR, TRAIN_INNER_ZIP, TRAIN_ZIP, VALID_DIR, VALID_ZIP,
};

/// The seed of the default synthetic set.
pub const DEFAULT_SEED: u64 = 19065;
/// The real set's class counts in training: H, N, P.
pub const TRAIN_COUNTS: (usize, usize, usize) = (26, 161, 213);
/// Number of validation images.
pub const VALID_COUNT: usize = 400;
/// Number of positive validation images.
pub const VALID_POSITIVES: usize = 211;
/// The two image sizes of the real set (width, height).
pub const REAL_SIZES: [(usize, usize); 2] = [(2124, 2056), (1444, 1444)];

/// Options of [`generate_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthOptions {
    /// Seed; the same seed gives byte-identical output.
    pub seed: u64,
    /// Force every image to this (width, height); `None`: the real sizes' mix.
    pub size: Option<(usize, usize)>,
    /// Also write the course's three zip archives.
    pub with_zips: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// JPEG quality (1..=100), 90 by default.
    pub quality: u8,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            seed: DEFAULT_SEED,
            size: None,
            with_zips: false,
            progress: false,
            quality: 90,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSummary {
    /// The output folder.
    pub out_dir: PathBuf,
    /// Training images written.
    pub train: usize,
    /// Validation images written.
    pub valid: usize,
    /// Validation positives.
    pub valid_positives: usize,
    /// Whether the zips were written.
    pub zips: bool,
}

/// Parses `WxH` (e.g. `256x248`) into (width, height).
pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let bad = || DataError::InvalidArgument(format!("bad size `{s}`, expected WxH like 256x248"));
    let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (usize, usize) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if !(32..=8192).contains(&w) || !(32..=8192).contains(&h) {
        return Err(DataError::InvalidArgument(format!(
            "size `{s}`: each side must be within 32..=8192"
        )));
    }
    Ok((w, h))
}

/// Generates the synthetic set into `out_dir`; see the module docs.
/// `size`: `None` for the real sizes, or a fixed (width, height).
pub fn generate(
    out_dir: impl AsRef<Path>,
    seed: u64,
    size: Option<(usize, usize)>,
    with_zips: bool,
) -> Result<SynthSummary> {
    generate_with(
        out_dir,
        &SynthOptions {
            seed,
            size,
            with_zips,
            ..SynthOptions::default()
        },
    )
}

/// The per-image plan: name, label, hidden class, size.
#[derive(Debug, Clone)]
struct Plan {
    name: String,
    label: u8,
    class: Class,
    w: usize,
    h: usize,
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Normal,
    High,
    Patho,
}

fn plans(opts: &SynthOptions) -> (Vec<Plan>, Vec<Plan>) {
    let mut rng = StdRng::seed_from_u64(mix(opts.seed, 1));
    let size = |rng: &mut StdRng| {
        opts.size.unwrap_or(if rng.gen_bool(0.6) {
            REAL_SIZES[0]
        } else {
            REAL_SIZES[1]
        })
    };
    let mut train = Vec::new();
    let (nh, nn, np) = TRAIN_COUNTS;
    for (letter, n, class) in [
        ('H', nh, Class::High),
        ('N', nn, Class::Normal),
        ('P', np, Class::Patho),
    ] {
        for i in 1..=n {
            let (w, h) = size(&mut rng);
            let label = u8::from(class == Class::Patho);
            train.push(Plan {
                name: format!("{letter}{i:04}.jpg"),
                label,
                class,
                w,
                h,
                seed: rng.gen(),
            });
        }
    }
    // Validation: choose which 211 of 400 are positive; negatives are H or N at
    // the training ratio.
    let mut idx: Vec<usize> = (0..VALID_COUNT).collect();
    use rand::seq::SliceRandom;
    idx.shuffle(&mut rng);
    let mut pos = vec![false; VALID_COUNT];
    for &i in &idx[..VALID_POSITIVES] {
        pos[i] = true;
    }
    let valid = (0..VALID_COUNT)
        .map(|i| {
            let (w, h) = size(&mut rng);
            let class = if pos[i] {
                Class::Patho
            } else if rng.gen_bool(nh as f64 / (nh + nn) as f64) {
                Class::High
            } else {
                Class::Normal
            };
            Plan {
                name: format!("V{:04}.jpg", i + 1),
                label: u8::from(pos[i]),
                class,
                w,
                h,
                seed: rng.gen(),
            }
        })
        .collect();
    (train, valid)
}

/// Generates the synthetic set into `out_dir` atomically: everything is
/// written to a temporary sibling folder which is renamed to `out_dir` at the
/// end, so `out_dir` never holds half-written output. `out_dir` must not exist
/// or be an empty folder.
pub fn generate_with(out_dir: impl AsRef<Path>, opts: &SynthOptions) -> Result<SynthSummary> {
    let out = out_dir.as_ref();
    if !(1..=100).contains(&opts.quality) {
        return Err(DataError::InvalidArgument(format!(
            "JPEG quality {} not in 1..=100",
            opts.quality
        )));
    }
    if let Some((w, h)) = opts.size {
        if !(32..=8192).contains(&w) || !(32..=8192).contains(&h) {
            return Err(DataError::InvalidArgument(format!(
                "size {w}x{h}: each side must be within 32..=8192"
            )));
        }
    }
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map_err(|e| DataError::io(out, e))?
            .next()
            .is_none();
        if !empty {
            return Err(DataError::InvalidArgument(format!(
                "{} already exists and is not empty",
                out.display()
            )));
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| DataError::io(&parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".palm-synth-")
        .tempdir_in(&parent)
        .map_err(|e| DataError::io(&parent, e))?;
    let summary = write_all(tmp.path(), opts)?;
    if out.exists() {
        std::fs::remove_dir(out).map_err(|e| DataError::io(out, e))?;
    }
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, out).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp_path);
        DataError::io(out, e)
    })?;
    Ok(SynthSummary {
        out_dir: out.to_path_buf(),
        ..summary
    })
}

fn write_all(dir: &Path, opts: &SynthOptions) -> Result<SynthSummary> {
    let (train, valid) = plans(opts);
    let tdir = dir.join(TRAIN_DIR);
    let vdir = dir.join(VALID_DIR);
    let gdir = dir.join(GT_DIR);
    for d in [&tdir, &vdir, &gdir] {
        std::fs::create_dir_all(d).map_err(|e| DataError::io(d, e))?;
    }
    let bar = progress_bar(opts.progress, (train.len() + valid.len()) as u64, "rendering");
    let render = |p: &Plan, dir: &Path| -> Result<(f64, f64)> {
        let (jpeg, fovea) = render_jpeg(p, opts.quality)?;
        let path = dir.join(&p.name);
        std::fs::write(&path, jpeg).map_err(|e| DataError::io(&path, e))?;
        bar.inc(1);
        Ok(fovea)
    };
    train
        .par_iter()
        .map(|p| render(p, &tdir).map(|_| ()))
        .collect::<Result<Vec<()>>>()?;
    let foveas = valid.par_iter().map(|p| render(p, &vdir)).collect::<Result<Vec<_>>>()?;
    bar.finish_and_clear();

    // Labels: CSV and xlsx with the course's columns.
    let mut csv = String::from("ID,imgName,Label,Fovea_X,Fovea_Y\n");
    for (i, (p, f)) in valid.iter().zip(&foveas).enumerate() {
        csv.push_str(&format!("{},{},{},{:.2},{:.2}\n", i + 1, p.name, p.label, f.0, f.1));
    }
    let csv_path = gdir.join(LABELS_CSV);
    std::fs::write(&csv_path, &csv).map_err(|e| DataError::io(&csv_path, e))?;
    let xlsx = labels_xlsx(&valid, &foveas).map_err(|e| DataError::Xlsx {
        path: gdir.join(LABELS_XLSX),
        reason: e.to_string(),
    })?;
    let xlsx_path = gdir.join(LABELS_XLSX);
    std::fs::write(&xlsx_path, &xlsx).map_err(|e| DataError::io(&xlsx_path, e))?;

    if opts.with_zips {
        write_zips(dir, &train, &valid, &xlsx)?;
    }
    Ok(SynthSummary {
        out_dir: dir.to_path_buf(),
        train: train.len(),
        valid: valid.len(),
        valid_positives: valid.iter().filter(|p| p.label == 1).count(),
        zips: opts.with_zips,
    })
}

fn labels_xlsx(valid: &[Plan], foveas: &[(f64, f64)]) -> std::result::Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    for (c, h) in ["ID", "imgName", "Label", "Fovea_X", "Fovea_Y"].iter().enumerate() {
        ws.write_string(0, c as u16, *h)?;
    }
    for (i, (p, f)) in valid.iter().zip(foveas).enumerate() {
        let r = i as u32 + 1;
        ws.write_number(r, 0, (i + 1) as f64)?;
        ws.write_string(r, 1, &p.name)?;
        ws.write_number(r, 2, p.label as f64)?;
        // The same two-decimal values as the CSV.
        ws.write_number(r, 3, two_decimals(f.0))?;
        ws.write_number(r, 4, two_decimals(f.1))?;
    }
    wb.save_to_buffer()
}

fn two_decimals(v: f64) -> f64 {
    format!("{v:.2}").parse().unwrap_or(v)
}

fn zip_err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

fn add_members<W: Write + std::io::Seek>(
    zw: &mut zip::ZipWriter<W>,
    prefix: &str,
    src: &Path,
    plans: &[Plan],
    zpath: &Path,
) -> Result<()> {
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zw.add_directory(format!("{prefix}/"), stored)
        .map_err(|e| zip_err(zpath, e))?;
    for p in plans {
        let b = std::fs::read(src.join(&p.name)).map_err(|e| DataError::io(src.join(&p.name), e))?;
        zw.start_file(format!("{prefix}/{}", p.name), stored)
            .map_err(|e| zip_err(zpath, e))?;
        zw.write_all(&b).map_err(|e| DataError::io(zpath, e))?;
    }
    Ok(())
}

fn write_zips(dir: &Path, train: &[Plan], valid: &[Plan], xlsx: &[u8]) -> Result<()> {
    use zip::write::SimpleFileOptions;
    let stored = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    let deflated = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    // training.zip -> PALM-Training400/PALM-Training400.zip -> PALM-Training400/*.jpg
    let tz = dir.join(TRAIN_ZIP);
    let mut inner = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    add_members(&mut inner, TRAIN_DIR, &dir.join(TRAIN_DIR), train, &tz)?;
    let inner = inner.finish().map_err(|e| zip_err(&tz, e))?.into_inner();
    let f = std::fs::File::create(&tz).map_err(|e| DataError::io(&tz, e))?;
    let mut zw = zip::ZipWriter::new(std::io::BufWriter::new(f));
    zw.add_directory(format!("{TRAIN_DIR}/"), stored)
        .map_err(|e| zip_err(&tz, e))?;
    zw.start_file(format!("{TRAIN_DIR}/{TRAIN_INNER_ZIP}"), stored)
        .map_err(|e| zip_err(&tz, e))?;
    zw.write_all(&inner).map_err(|e| DataError::io(&tz, e))?;
    zw.finish().map_err(|e| zip_err(&tz, e))?;
    // validation.zip -> PALM-Validation400/V*.jpg
    let vz = dir.join(VALID_ZIP);
    let f = std::fs::File::create(&vz).map_err(|e| DataError::io(&vz, e))?;
    let mut zw = zip::ZipWriter::new(std::io::BufWriter::new(f));
    add_members(&mut zw, VALID_DIR, &dir.join(VALID_DIR), valid, &vz)?;
    zw.finish().map_err(|e| zip_err(&vz, e))?;
    // valid_gt.zip -> PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx
    let gz = dir.join(GT_ZIP);
    let f = std::fs::File::create(&gz).map_err(|e| DataError::io(&gz, e))?;
    let mut zw = zip::ZipWriter::new(std::io::BufWriter::new(f));
    zw.add_directory(format!("{GT_DIR}/"), stored)
        .map_err(|e| zip_err(&gz, e))?;
    zw.start_file(format!("{GT_DIR}/{LABELS_XLSX}"), deflated)
        .map_err(|e| zip_err(&gz, e))?;
    zw.write_all(xlsx).map_err(|e| DataError::io(&gz, e))?;
    zw.finish().map_err(|e| zip_err(&gz, e))?;
    Ok(())
}

/// The cache folder for synthetic sets: `$PALM_CNN_CACHE`, else
/// `$XDG_CACHE_HOME/palm-cnn`, else `~/.cache/palm-cnn`, else the system temp dir.
pub fn cache_root() -> PathBuf {
    if let Some(p) = std::env::var_os("PALM_CNN_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(p).join("palm-cnn");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".cache").join("palm-cnn");
    }
    std::env::temp_dir().join("palm-cnn")
}

/// Version of the image generator, part of the cache folder's name: bump it whenever a change
/// alters the generated pixels, so that a cache written by older code is not mistaken for the
/// current set.
pub const GENERATOR_VERSION: u32 = 4;

/// The synthetic set for `seed` and `size`, generated once into
/// [`cache_root`]`/synthetic-v<version>-<seed>-<size>` (size `real` for the real sizes'
/// mix; version [`GENERATOR_VERSION`]) and reused afterwards. Generation is atomic (see [`generate_with`]); if
/// two processes race, the second one's rename fails harmlessly and the first
/// one's set is used.
pub fn cached_data_dir(seed: u64, size: Option<(usize, usize)>, progress: bool) -> Result<PathBuf> {
    let tag = match size {
        Some((w, h)) => format!("{w}x{h}"),
        None => "real".to_string(),
    };
    let dir = cache_root().join(format!("synthetic-v{GENERATOR_VERSION}-{seed}-{tag}"));
    if is_complete(&dir) {
        return Ok(dir);
    }
    let opts = SynthOptions {
        seed,
        size,
        with_zips: false,
        progress,
        ..SynthOptions::default()
    };
    match generate_with(&dir, &opts) {
        Ok(_) => Ok(dir),
        Err(_) if is_complete(&dir) => Ok(dir),
        Err(e) => Err(e),
    }
}

fn is_complete(dir: &Path) -> bool {
    dir.join(GT_DIR).join(LABELS_CSV).is_file() && dir.join(GT_DIR).join(LABELS_XLSX).is_file()
}

/// The default data folder: `$PALM_DATA` when set (a folder with the real
/// data, as downloaded for the course), otherwise the default synthetic set
/// ([`DEFAULT_SEED`], real sizes), generated once into the cache.
pub fn default_data_dir() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PALM_DATA").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    cached_data_dir(DEFAULT_SEED, None, true)
}

// ---------------------------------------------------------------- rendering

fn hash2(x: i32, y: i32, s: u32) -> u32 {
    let mut h =
        (x as u32).wrapping_mul(0x8da6_b343) ^ (y as u32).wrapping_mul(0xd816_3841) ^ s.wrapping_mul(0xcb1a_b31f);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297a_2d39);
    h ^ (h >> 15)
}

fn unit(h: u32) -> f32 {
    (h >> 8) as f32 / (1u32 << 24) as f32
}

/// Smooth value noise in [0, 1].
fn vnoise(x: f32, y: f32, s: u32) -> f32 {
    let (xi, yi) = (floor(x), floor(y));
    let (fx, fy) = (x - xi, y - yi);
    let (xi, yi) = (xi as i32, yi as i32);
    let sm = |t: f32| t * t * (3.0 - 2.0 * t);
    let (u, v) = (sm(fx), sm(fy));
    let a = unit(hash2(xi, yi, s));
    let b = unit(hash2(xi + 1, yi, s));
    let c = unit(hash2(xi, yi + 1, s));
    let d = unit(hash2(xi + 1, yi + 1, s));
    (a + (b - a) * u) * (1.0 - v) + (c + (d - c) * u) * v
}

/// `x.floor()` for |x| < 2^31 without a libm call (no SSE4.1 `roundss` in the
/// baseline x86-64 target).
fn floor(x: f32) -> f32 {
    let t = x as i32 as f32;
    if t > x {
        t - 1.0
    } else {
        t
    }
}

fn fbm(x: f32, y: f32, s: u32, oct: u32) -> f32 {
    let (mut sum, mut amp, mut f, mut norm) = (0.0, 0.5, 1.0, 0.0);
    for o in 0..oct {
        sum += amp * vnoise(x * f, y * f, s.wrapping_add(o * 101));
        norm += amp;
        amp *= 0.5;
        f *= 2.03;
    }
    sum / norm
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

#[derive(Clone, Copy)]
struct Seg {
    a: (f32, f32),
    b: (f32, f32),
    w: f32,
    dark: f32,
}

struct Patch {
    c: (f32, f32),
    r: f32,
    s: u32,
}

/// Everything random about one image, in full-resolution pixel coordinates.
struct Scene {
    w: usize,
    h: usize,
    c: (f32, f32),
    r: f32,
    disc: (f32, f32),
    disc_r: f32,
    fovea: (f32, f32),
    side: f32,
    base: [f32; 3],
    gain: f32,
    cast: [f32; 3],
    grad: (f32, f32),
    vignette: f32,
    tess_freq: f32,
    les: Lesions,
    vessels: Vec<Seg>,
    noise_seed: u32,
}

fn scene(p: &Plan) -> Scene {
    let mut rng = StdRng::seed_from_u64(p.seed);
    let (w, h) = (p.w as f32, p.h as f32);
    let m = w.min(h);
    let r = m * rng.gen_range(0.38..0.52);
    let c = (
        w / 2.0 + rng.gen_range(-0.04..0.04) * m,
        h / 2.0 + rng.gen_range(-0.04..0.04) * m,
    );
    let rot: f32 = rng.gen_range(-12.0f32..12.0).to_radians();
    let side = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
    let rotp = |dx: f32, dy: f32| {
        (
            c.0 + dx * rot.cos() - dy * rot.sin(),
            c.1 + dx * rot.sin() + dy * rot.cos(),
        )
    };
    // Disc nasal, fovea temporal, ~2.5 disc diameters apart.
    let disc_r = r * rng.gen_range(0.085..0.12);
    let dd = disc_r * 2.0 * rng.gen_range(2.2..2.8);
    let off = rng.gen_range(-0.05..0.05) * r;
    let disc = rotp(side * dd * 0.55 + rng.gen_range(-0.05..0.05) * r, off);
    let fovea = rotp(
        -side * dd * 0.45 + rng.gen_range(-0.04..0.04) * r,
        off + rng.gen_range(0.0..0.06) * r,
    );

    let mid = ((disc.0 + fovea.0) / 2.0, (disc.1 + fovea.1) / 2.0);
    let les = lesions(
        &mut rng,
        p.class,
        Anatomy {
            r,
            disc_r,
            fovea,
            mid,
            dd,
        },
    );
    let vessels = vessel_tree(&mut rng, disc, fovea, disc_r, r, c);
    let base_hue = rng.gen_range(0.0f32..1.0);
    Scene {
        w: p.w,
        h: p.h,
        c,
        r,
        disc,
        disc_r,
        fovea,
        side,
        base: [
            0.84 + 0.12 * base_hue,
            0.42 + 0.14 * (1.0 - base_hue) + rng.gen_range(-0.04..0.04),
            0.14 + rng.gen_range(0.0..0.16),
        ],
        gain: rng.gen_range(0.9..1.1),
        cast: [
            rng.gen_range(0.92..1.05),
            rng.gen_range(0.9..1.08),
            rng.gen_range(0.85..1.15),
        ],
        grad: (rng.gen_range(-0.25..0.25), rng.gen_range(-0.25..0.25)),
        vignette: rng.gen_range(0.2..0.6),
        tess_freq: rng.gen_range(5.0..9.0),
        les,
        vessels,
        noise_seed: rng.gen(),
    }
}

/// Where the lesions go: the field's radius and the posterior pole's landmarks.
#[derive(Clone, Copy)]
struct Anatomy {
    r: f32,
    disc_r: f32,
    fovea: (f32, f32),
    /// Midway between disc and fovea: the centre of the posterior pole.
    mid: (f32, f32),
    /// Disc-to-fovea distance.
    dd: f32,
}

/// What an eye shows beyond its anatomy, drawn per class by [`lesions`].
struct Lesions {
    /// Tessellation: the choroidal vessels showing through a thinned retina, 0..1.
    tess: f32,
    /// The disc's width over its height: below 1 a tilted disc, common in myopia.
    disc_aspect: f32,
    /// Peripapillary atrophy: the pale crescent's width on the temporal side, in disc radii.
    ppa: f32,
    /// Diffuse chorioretinal atrophy over the posterior pole, 0..1.
    diffuse: f32,
    /// Patchy chorioretinal atrophy: sharp-edged white patches with pigmented rims.
    patches: Vec<Patch>,
    /// Lacquer cracks: thin yellow-white lines near the macula.
    cracks: Vec<Seg>,
    /// The edge of a posterior staphyloma: centre, radius and strength of a pigmented arc
    /// around the posterior pole, paler and more tessellated inside.
    staphyloma: Option<((f32, f32), f32, f32)>,
    /// The light reflex of a young retina: a pale sheen along the vessel arcades, 0..1. It
    /// is no lesion but it brightens the image, so that brightness alone does not tell a
    /// pale atrophic eye from a healthy shiny one.
    sheen: f32,
}

/// The lesion kinds of pathologic myopia (META-PM's categories and plus lesions) that a `P`
/// image can show; each `P` image gets one of them at a clearly visible size, more as its
/// severity grows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lesion {
    Crescent,
    Patchy,
    Diffuse,
    Cracks,
    Staphyloma,
}

/// The calibration of the stand-in, per class (see the module docs and the README for what it
/// is measured against):
/// - `N`: little tessellation, a round disc, rarely a thin crescent;
/// - `H`: tessellation, a tilted disc, a crescent of at most 0.4 disc radii; no atrophy;
/// - `P`: one lesion at a size clearly visible at 224×224 (a crescent of 1.8 disc radii or
///   more, white patches of 1.2 disc radii or more, a diffuse atrophic haze, lacquer cracks or a staphyloma edge), and
///   each other lesion with a probability growing with a severity drawn uniformly in 0..1.
fn lesions(rng: &mut StdRng, class: Class, a: Anatomy) -> Lesions {
    let mut les = Lesions {
        tess: 0.0,
        disc_aspect: 1.0,
        ppa: 0.0,
        diffuse: 0.0,
        patches: Vec::new(),
        cracks: Vec::new(),
        staphyloma: None,
        sheen: 0.0,
    };
    match class {
        Class::Normal => {
            les.tess = rng.gen_range(0.0..0.3);
            les.disc_aspect = rng.gen_range(0.9..1.0);
            if rng.gen_bool(0.15) {
                les.ppa = rng.gen_range(0.05..0.25);
            }
            if rng.gen_bool(0.7) {
                les.sheen = rng.gen_range(0.3..0.7);
            }
        }
        Class::High => {
            les.tess = rng.gen_range(0.3..0.85);
            les.disc_aspect = rng.gen_range(0.7..0.92);
            les.ppa = rng.gen_range(0.1..0.4);
            if rng.gen_bool(0.4) {
                les.sheen = rng.gen_range(0.1..0.4);
            }
        }
        Class::Patho => {
            let severity: f32 = rng.gen_range(0.0..1.0);
            les.tess = rng.gen_range(0.4..1.0);
            les.disc_aspect = rng.gen_range(0.65..0.95);
            let kinds = [
                Lesion::Crescent,
                Lesion::Patchy,
                Lesion::Diffuse,
                Lesion::Cracks,
                Lesion::Staphyloma,
            ];
            let weights = rand::distributions::WeightedIndex::new([30u32, 30, 20, 10, 10]).expect("positive weights");
            let primary = kinds[rand::distributions::Distribution::sample(&weights, rng)];
            for kind in kinds {
                let present = kind == primary || rng.gen_bool((0.15 + 0.6 * severity) as f64);
                if present {
                    add_lesion(rng, &mut les, kind, severity, a);
                }
            }
        }
    }
    les
}

fn add_lesion(rng: &mut StdRng, les: &mut Lesions, kind: Lesion, severity: f32, a: Anatomy) {
    let Anatomy {
        r,
        disc_r,
        fovea,
        mid,
        dd,
        ..
    } = a;
    match kind {
        Lesion::Crescent => les.ppa = rng.gen_range(1.8..2.4) + 2.4 * severity,
        Lesion::Patchy => {
            let n = 2 + (severity * 4.0) as usize + rng.gen_range(0..2);
            les.patches = (0..n)
                .map(|_| {
                    let ang: f32 = rng.gen_range(0.0..std::f32::consts::TAU);
                    let d = rng.gen_range(0.1..0.9) * dd;
                    Patch {
                        c: (mid.0 + d * ang.cos(), mid.1 + d * ang.sin()),
                        r: disc_r * rng.gen_range(1.35..2.4) * (0.9 + 0.8 * severity),
                        s: rng.gen(),
                    }
                })
                .collect();
        }
        Lesion::Diffuse => les.diffuse = (rng.gen_range(0.9..1.2) + 0.45 * severity).min(1.0),
        Lesion::Cracks => {
            let n = 3 + (severity * 3.0) as usize;
            les.cracks = (0..n)
                .flat_map(|_| {
                    let mut pos = (
                        fovea.0 + rng.gen_range(-0.2..0.2) * r,
                        fovea.1 + rng.gen_range(-0.2..0.2) * r,
                    );
                    let mut ang: f32 = rng.gen_range(0.0..std::f32::consts::TAU);
                    let steps = rng.gen_range(8..16);
                    let mut v = Vec::new();
                    for _ in 0..steps {
                        ang += rng.gen_range(-0.35..0.35);
                        let next = (pos.0 + r * 0.025 * ang.cos(), pos.1 + r * 0.025 * ang.sin());
                        v.push(Seg {
                            a: pos,
                            b: next,
                            w: r * 0.02,
                            dark: 0.0,
                        });
                        pos = next;
                    }
                    v
                })
                .collect();
        }
        Lesion::Staphyloma => {
            les.staphyloma = Some((
                mid,
                r * rng.gen_range(0.4..0.6),
                rng.gen_range(0.75..0.9) + 0.1 * severity,
            ));
            les.tess = les.tess.max(0.7);
        }
    }
}

fn vessel_tree(rng: &mut StdRng, disc: (f32, f32), fovea: (f32, f32), disc_r: f32, r: f32, c: (f32, f32)) -> Vec<Seg> {
    let to_fovea = (fovea.1 - disc.1).atan2(fovea.0 - disc.0);
    let mut segs = Vec::new();
    // (angle offset from the fovea direction, bend towards the fovea side)
    let mains = [
        (0.9f32, -1.0f32),
        (-0.9, 1.0),
        (std::f32::consts::PI - 0.6, 0.0),
        (std::f32::consts::PI + 0.6, 0.0),
    ];
    for (k, &(off, bend)) in mains.iter().enumerate() {
        for vein in [false, true] {
            let a0 = to_fovea + off + rng.gen_range(-0.15..0.15) + if vein { 0.12 } else { -0.12 };
            let w0 = r * if vein { 0.016 } else { 0.012 } * rng.gen_range(0.85..1.15) * if k >= 2 { 0.8 } else { 1.0 };
            let start = (disc.0 + disc_r * 0.2 * a0.cos(), disc.1 + disc_r * 0.2 * a0.sin());
            grow(
                rng,
                &mut segs,
                start,
                a0,
                w0,
                bend * 0.055,
                if vein { 0.65 } else { 0.45 },
                r,
                c,
                0,
            );
        }
    }
    segs
}

#[allow(clippy::too_many_arguments)]
fn grow(
    rng: &mut StdRng,
    segs: &mut Vec<Seg>,
    mut pos: (f32, f32),
    mut ang: f32,
    mut w: f32,
    bend: f32,
    dark: f32,
    r: f32,
    c: (f32, f32),
    depth: u32,
) {
    let step = r * 0.035;
    for _ in 0..60 {
        ang += bend + rng.gen_range(-0.18..0.18);
        let next = (pos.0 + step * ang.cos(), pos.1 + step * ang.sin());
        segs.push(Seg {
            a: pos,
            b: next,
            w,
            dark,
        });
        pos = next;
        w *= 0.985;
        let d = ((pos.0 - c.0).powi(2) + (pos.1 - c.1).powi(2)).sqrt();
        if d > r * 1.02 || w < r * 0.0025 {
            return;
        }
        if depth < 4 && rng.gen_bool(0.14) {
            let s = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
            let da = s * rng.gen_range(0.4..0.9);
            grow(rng, segs, pos, ang + da, w * 0.7, bend * 0.5, dark, r, c, depth + 1);
            w *= 0.88;
        }
    }
}

/// Rasterises segments into an alpha buffer (`max` blend) of the low-res grid.
fn raster(segs: &[Seg], lw: usize, lh: usize, k: f32, alpha: &mut [f32], darkness: &mut [f32]) {
    for s in segs {
        let half = s.w / 2.0 + k;
        let (x0, x1) = (s.a.0.min(s.b.0) - half, s.a.0.max(s.b.0) + half);
        let (y0, y1) = (s.a.1.min(s.b.1) - half, s.a.1.max(s.b.1) + half);
        let (ix0, ix1) = (((x0 / k).floor().max(0.0)) as usize, ((x1 / k).ceil() as usize).min(lw));
        let (iy0, iy1) = (((y0 / k).floor().max(0.0)) as usize, ((y1 / k).ceil() as usize).min(lh));
        let (dx, dy) = (s.b.0 - s.a.0, s.b.1 - s.a.1);
        let len2 = (dx * dx + dy * dy).max(1e-6);
        for iy in iy0..iy1 {
            for ix in ix0..ix1 {
                let (px, py) = ((ix as f32 + 0.5) * k, (iy as f32 + 0.5) * k);
                let t = (((px - s.a.0) * dx + (py - s.a.1) * dy) / len2).clamp(0.0, 1.0);
                let (qx, qy) = (s.a.0 + t * dx - px, s.a.1 + t * dy - py);
                let d = (qx * qx + qy * qy).sqrt();
                // Antialiased coverage, softened by the pixel size.
                let cov = (1.0 - smoothstep(s.w / 2.0 - k * 0.5, s.w / 2.0 + k * 0.5, d)) * (s.w / k).clamp(0.35, 1.0);
                let i = iy * lw + ix;
                if cov > alpha[i] {
                    alpha[i] = cov;
                    darkness[i] = s.dark;
                }
            }
        }
    }
}

fn shade(sc: &Scene, px: f32, py: f32, vessel: (f32, f32), crack: f32) -> [f32; 3] {
    let (dx, dy) = (px - sc.c.0, py - sc.c.1);
    let d = (dx * dx + dy * dy).sqrt() / sc.r;
    if d > 1.03 {
        return [0.012, 0.010, 0.010];
    }
    let (u, v) = (dx / sc.r, dy / sc.r);
    let ns = sc.noise_seed;
    let mut col = sc.base;
    // Fine retinal texture.
    let tex = vnoise(u * 14.0, v * 14.0, ns) - 0.5;
    col = [
        col[0] * (1.0 + 0.08 * tex),
        col[1] * (1.0 + 0.12 * tex),
        col[2] * (1.0 + 0.1 * tex),
    ];
    let les = &sc.les;
    // Tessellation: ridged, warped noise showing the choroidal vessels; stronger inside a
    // staphyloma.
    let staph = les.staphyloma.map(|(sc_c, sr, strength)| {
        let ds = ((px - sc_c.0).powi(2) + (py - sc_c.1).powi(2)).sqrt() / sr;
        (ds, strength)
    });
    let tess = les.tess + staph.map_or(0.0, |(ds, strength)| 0.3 * strength * (1.0 - smoothstep(0.9, 1.0, ds)));
    if tess > 0.01 {
        let wx = vnoise(u * 3.0 + 7.1, v * 3.0, ns ^ 0x55);
        let n = fbm(u * sc.tess_freq + wx * 2.0, v * sc.tess_freq * 0.7, ns ^ 0xAA, 2);
        let ridge = 1.0 - (2.0 * n - 1.0).abs();
        let t = tess.min(1.0) * smoothstep(0.55, 0.95, ridge) * (0.55 + 0.45 * d.min(1.0));
        col = lerp3(col, [col[0] * 0.62, col[1] * 0.45, col[2] * 0.5], t * 0.85);
    }
    // Staphyloma: paler inside, a pigmented arc at its edge.
    if let Some((ds, strength)) = staph {
        let inside = 1.0 - smoothstep(0.92, 1.0, ds);
        col = lerp3(col, [0.90, 0.62, 0.42], inside * 0.35 * strength);
        let rim = (-((ds - 1.0) / 0.05).powi(2)).exp();
        col = lerp3(col, [0.22, 0.11, 0.06], rim * 0.75 * strength);
    }
    // The disc, tilted: squeezed along x.
    let dist_disc = (((px - sc.disc.0) / les.disc_aspect).powi(2) + (py - sc.disc.1).powi(2)).sqrt();
    // Diffuse atrophy: yellowish haze over the posterior pole.
    if les.diffuse > 0.01 {
        col = lerp3(col, [0.93, 0.74, 0.38], diffuse_atrophy(sc, px, py, u, v));
    }
    // Patchy atrophy: irregular pale patches with pigmented rims.
    for p in &les.patches {
        if let Some((inside, rim)) = atrophy_patch(p, px, py, u, v) {
            col = lerp3(col, [0.96, 0.90, 0.50], inside * 0.92);
            col = lerp3(col, [0.25, 0.15, 0.08], rim * 0.45);
        }
    }
    // The light reflex: a patchy pale band along the arcades around the posterior pole.
    if les.sheen > 0.01 {
        let mid = ((sc.disc.0 + sc.fovea.0) / 2.0, (sc.disc.1 + sc.fovea.1) / 2.0);
        let dm = ((px - mid.0).powi(2) + (py - mid.1).powi(2)).sqrt() / sc.r;
        let band = (-((dm - 0.42) / 0.14).powi(2)).exp() * smoothstep(0.45, 0.75, fbm(u * 6.0, v * 6.0, ns ^ 0x33, 2));
        col = lerp3(col, [0.97, 0.92, 0.92], les.sheen * band);
    }
    // Peripapillary atrophy: a pale crescent, widest on the temporal side.
    if les.ppa > 0.01 {
        let ang = (py - sc.disc.1).atan2(px - sc.disc.0);
        let temporal = (-sc.side * ang.cos()).max(0.0);
        let width = sc.disc_r * les.ppa * (0.25 + 1.1 * temporal);
        let ring = 1.0 - smoothstep(sc.disc_r + width * 0.7, sc.disc_r + width, dist_disc);
        col = lerp3(col, [0.92, 0.84, 0.50], ring * 0.9);
    }
    // Macula: darker, browner, with the fovea pit.
    let df = ((px - sc.fovea.0).powi(2) + (py - sc.fovea.1).powi(2)).sqrt() / sc.r;
    let mac = (-(df * df) / (2.0 * 0.11 * 0.11)).exp();
    col = [
        col[0] * (1.0 - 0.28 * mac),
        col[1] * (1.0 - 0.42 * mac),
        col[2] * (1.0 - 0.4 * mac),
    ];
    let pit = (-(df * df) / (2.0 * 0.018 * 0.018)).exp();
    col = lerp3(col, [0.35, 0.12, 0.06], pit * 0.5);
    // Optic disc with a pale cup.
    let disc_t = 1.0 - smoothstep(sc.disc_r * 0.9, sc.disc_r * 1.05, dist_disc);
    col = lerp3(col, [0.98, 0.80, 0.50], disc_t);
    let cup = 1.0 - smoothstep(sc.disc_r * 0.25, sc.disc_r * 0.5, dist_disc);
    col = lerp3(col, [1.0, 0.93, 0.78], cup * 0.8);
    // Lacquer cracks, then vessels on top.
    col = lerp3(col, [0.95, 0.85, 0.50], crack * 0.9);
    let (va, vd) = vessel;
    col = lerp3(col, [0.55 - 0.3 * vd, 0.10 - 0.05 * vd, 0.06], va * 0.85);
    // Illumination: gain, colour cast, gradient, vignetting, soft field edge.
    let illum = sc.gain * (1.0 + sc.grad.0 * u + sc.grad.1 * v) * (1.0 - sc.vignette * d.powi(3));
    let edge = 1.0 - smoothstep(0.97, 1.03, d);
    let mut out = [0.0; 3];
    for ch in 0..3 {
        let val = col[ch] * sc.cast[ch] * illum;
        out[ch] = val * edge + 0.012 * (1.0 - edge);
    }
    out
}

/// Diffuse atrophy's blend factor at `(px, py)` (`(u, v)`: the same point in field radii from
/// the centre): a haze over the posterior pole, between disc and fovea.
fn diffuse_atrophy(sc: &Scene, px: f32, py: f32, u: f32, v: f32) -> f32 {
    let mid = ((sc.disc.0 + sc.fovea.0) / 2.0, (sc.disc.1 + sc.fovea.1) / 2.0);
    let dm = ((px - mid.0).powi(2) + (py - mid.1).powi(2)).sqrt() / (sc.r * 0.45);
    let t = sc.les.diffuse * (-dm * dm).exp() * (0.6 + 0.8 * fbm(u * 5.0, v * 5.0, sc.noise_seed ^ 0x77, 2));
    t.min(0.85)
}

/// An atrophy patch's (inside, pigmented rim) weights at `(px, py)`, both in [0, 1], with a
/// ragged edge; `None` well outside it.
fn atrophy_patch(p: &Patch, px: f32, py: f32, u: f32, v: f32) -> Option<(f32, f32)> {
    let dp = ((px - p.c.0).powi(2) + (py - p.c.1).powi(2)).sqrt() / p.r;
    if dp >= 1.6 {
        return None;
    }
    let edge = 1.0 + 0.35 * (fbm(u * 18.0, v * 18.0, p.s, 2) - 0.5) * 2.0;
    let inside = 1.0 - smoothstep(edge - 0.12, edge, dp);
    let rim = smoothstep(edge - 0.15, edge, dp) * (1.0 - smoothstep(edge, edge + 0.18, dp));
    Some((inside, rim))
}

/// How strongly the lesions of pathologic myopia change the pixel at (`px`, `py`), 0..1: the
/// largest of the blend factors [`shade`] gives them (atrophic patches and their rims, the
/// diffuse haze, a crescent of a `P` eye, lacquer cracks, a staphyloma's pale inside and
/// pigmented edge). Tessellation, tilted discs and the small crescents of `H` and `N` eyes are
/// not lesions.
fn lesion_weight(sc: &Scene, px: f32, py: f32, crack: f32) -> f32 {
    let les = &sc.les;
    let (u, v) = ((px - sc.c.0) / sc.r, (py - sc.c.1) / sc.r);
    if (u * u + v * v).sqrt() > 1.0 {
        return 0.0;
    }
    let mut w = crack * 0.9;
    if let Some((sc_c, sr, strength)) = les.staphyloma {
        let ds = ((px - sc_c.0).powi(2) + (py - sc_c.1).powi(2)).sqrt() / sr;
        let inside = 1.0 - smoothstep(0.92, 1.0, ds);
        let rim = (-((ds - 1.0) / 0.05).powi(2)).exp();
        w = w.max(inside * 0.35 * strength).max(rim * 0.75 * strength);
    }
    if les.diffuse > 0.01 {
        w = w.max(diffuse_atrophy(sc, px, py, u, v));
    }
    for p in &les.patches {
        if let Some((inside, rim)) = atrophy_patch(p, px, py, u, v) {
            w = w.max(inside * 0.92).max(rim * 0.45);
        }
    }
    // Only a `P` eye's crescent is atrophy (1.8 disc radii or more); `H` and `N` crescents are
    // at most 0.4.
    if les.ppa >= PATHOLOGIC_CRESCENT {
        let dist_disc = (((px - sc.disc.0) / les.disc_aspect).powi(2) + (py - sc.disc.1).powi(2)).sqrt();
        let ang = (py - sc.disc.1).atan2(px - sc.disc.0);
        let temporal = (-sc.side * ang.cos()).max(0.0);
        let width = sc.disc_r * les.ppa * (0.25 + 1.1 * temporal);
        let ring = 1.0 - smoothstep(sc.disc_r + width * 0.7, sc.disc_r + width, dist_disc);
        // The disc itself is not atrophy.
        let off_disc = smoothstep(sc.disc_r * 0.9, sc.disc_r * 1.05, dist_disc);
        w = w.max(ring * 0.9 * off_disc);
    }
    w
}

/// The weight above which [`lesion_weight`] counts a pixel as lesion: the lesion changes its
/// colour by a quarter of the way to the lesion's own colour or more.
const LESION_THRESHOLD: f32 = 0.25;

/// The narrowest crescent a `P` image's crescent lesion has, in disc radii.
const PATHOLOGIC_CRESCENT: f32 = 1.8;

/// The lesion mask of one image at `out_w × out_h` (e.g. the network's 224×224, or the photo's
/// own size), row-major: the lesion weight is computed on the rendering grid, resized bilinearly
/// (pixel centres aligned, as the photos are resized) and thresholded.
fn render_mask(p: &Plan, out_w: usize, out_h: usize) -> Vec<bool> {
    let sc = scene(p);
    if p.class != Class::Patho {
        return vec![false; out_w * out_h];
    }
    let k = render_scale(p.w);
    let (lw, lh) = (p.w.div_ceil(k), p.h.div_ceil(k));
    let kf = k as f32;
    let mut ca = vec![0f32; lw * lh];
    let mut cd = vec![0f32; lw * lh];
    raster(&sc.les.cracks, lw, lh, kf, &mut ca, &mut cd);
    let mut low = vec![0f32; lw * lh];
    for iy in 0..lh {
        for ix in 0..lw {
            let i = iy * lw + ix;
            low[i] = lesion_weight(&sc, (ix as f32 + 0.5) * kf, (iy as f32 + 0.5) * kf, ca[i]);
        }
    }
    // Output pixel centre → full-size coordinate → rendering-grid coordinate.
    let axis = |out: usize, full: usize, low: usize| -> Vec<(usize, usize, f32)> {
        (0..out)
            .map(|i| {
                let full_x = (i as f32 + 0.5) * full as f32 / out as f32;
                let f = (full_x / kf - 0.5).clamp(0.0, (low - 1) as f32);
                let i0 = f.floor() as usize;
                (i0, (i0 + 1).min(low - 1), f - i0 as f32)
            })
            .collect()
    };
    let (xs, ys) = (axis(out_w, p.w, lw), axis(out_h, p.h, lh));
    let at = |y: usize, x: usize| low[y * lw + x];
    let mut mask = Vec::with_capacity(out_w * out_h);
    for &(y0, y1, ty) in &ys {
        for &(x0, x1, tx) in &xs {
            let top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * tx;
            let bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * tx;
            mask.push(top + (bottom - top) * ty >= LESION_THRESHOLD);
        }
    }
    mask
}

/// The lesion masks of a synthetic set's validation images: where the generator drew the
/// lesions of each `P` image, re-rendered from the set's options or read back from the PNGs
/// `data synth --masks` wrote. Grad-CAM's lesion share ([`crate::explain::lesion_share`])
/// compares a network's attention with them.
#[derive(Debug, Clone)]
pub struct LesionMasks {
    source: MaskSource,
}

#[derive(Debug, Clone)]
enum MaskSource {
    Rendered(Vec<Plan>),
    /// A folder of `<stem>.png` masks (non-zero = lesion), one per positive image.
    Pngs(PathBuf),
}

impl LesionMasks {
    /// The masks of the set `opts` generates.
    pub fn new(opts: &SynthOptions) -> Self {
        LesionMasks {
            source: MaskSource::Rendered(plans(opts).1),
        }
    }

    /// The masks of a set in the synthetic cache ([`cached_data_dir`], e.g. the default set),
    /// recognised by its folder name; `None` for any other folder (real data, or a set
    /// generated elsewhere: use [`LesionMasks::new`] with its options).
    pub fn for_cached_dir(dir: &Path) -> Option<Self> {
        let name = dir.file_name()?.to_str()?;
        let rest = name.strip_prefix(&format!("synthetic-v{GENERATOR_VERSION}-"))?;
        let (seed, tag) = rest.split_once('-')?;
        let size = match tag {
            "real" => None,
            t => Some(parse_size(t).ok()?),
        };
        Some(Self::new(&SynthOptions {
            seed: seed.parse().ok()?,
            size,
            ..SynthOptions::default()
        }))
    }

    /// The masks of the data folder `dir`: its [`MASKS_DIR`] folder of PNGs when it has one
    /// (`data synth --masks`), else the cached synthetic set's re-rendered masks
    /// ([`LesionMasks::for_cached_dir`]); `None` when neither applies.
    pub fn for_data_dir(dir: &Path) -> Option<Self> {
        let pngs = dir.join(MASKS_DIR);
        if pngs.is_dir() {
            return Some(LesionMasks {
                source: MaskSource::Pngs(pngs),
            });
        }
        Self::for_cached_dir(dir)
    }

    /// The mask of validation image `name` (e.g. `V0001.jpg`) at `width × height`, row-major;
    /// all false for an image without lesions. `Ok(None)` for a name the masks do not know
    /// (a PNG folder holds positive images only). PNG masks are resampled at pixel centres.
    ///
    /// # Errors
    /// A mask PNG that cannot be read or decoded.
    pub fn mask(&self, name: &str, width: usize, height: usize) -> Result<Option<Vec<bool>>> {
        match &self.source {
            MaskSource::Rendered(valid) => Ok(valid
                .iter()
                .find(|p| p.name == name)
                .map(|plan| render_mask(plan, width, height))),
            MaskSource::Pngs(dir) => {
                let path = dir.join(Path::new(name).with_extension("png"));
                if !path.is_file() {
                    return Ok(None);
                }
                let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
                let img = super::image::decode(&bytes, &path, super::DecodeMode::default(), None)?;
                let (w, h) = (img.width, img.height);
                let mut mask = Vec::with_capacity(width * height);
                for y in 0..height {
                    let sy = ((y as f64 + 0.5) * h as f64 / height as f64) as usize;
                    for x in 0..width {
                        let sx = ((x as f64 + 0.5) * w as f64 / width as f64) as usize;
                        mask.push(img.data[(sy.min(h - 1) * w + sx.min(w - 1)) * 3] > 0);
                    }
                }
                Ok(Some(mask))
            }
        }
    }

    /// Writes the mask of every positive validation image as `<name>.png` (8-bit grey, 255 on
    /// the lesions, the photo's size) into `dir`; returns how many.
    ///
    /// # Errors
    /// A folder or file that cannot be written.
    pub fn write_pngs(&self, dir: &Path) -> Result<usize> {
        let MaskSource::Rendered(valid) = &self.source else {
            return Err(DataError::io(
                dir,
                std::io::Error::other("these masks were read from PNGs already"),
            ));
        };
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let positives: Vec<&Plan> = valid.iter().filter(|p| p.class == Class::Patho).collect();
        positives
            .par_iter()
            .map(|p| {
                let grey: Vec<u8> = render_mask(p, p.w, p.h)
                    .into_iter()
                    .map(|m| if m { 255 } else { 0 })
                    .collect();
                let path = dir.join(Path::new(&p.name).with_extension("png"));
                let file = std::fs::File::create(&path).map_err(|e| DataError::io(&path, e))?;
                let mut enc = png::Encoder::new(std::io::BufWriter::new(file), p.w as u32, p.h as u32);
                enc.set_color(png::ColorType::Grayscale);
                enc.set_depth(png::BitDepth::Eight);
                let io = |e: png::EncodingError| DataError::io(&path, std::io::Error::other(e.to_string()));
                let mut w = enc.write_header().map_err(io)?;
                w.write_image_data(&grey).map_err(io)?;
                w.finish().map_err(io)?;
                Ok(())
            })
            .collect::<Result<Vec<()>>>()?;
        Ok(positives.len())
    }
}

/// The folder [`LesionMasks::write_pngs`] writes to under a synthetic set (`data synth --masks`).
pub const MASKS_DIR: &str = "PALM-Validation-Masks";

/// The rendering grid's pixel size in full-size pixels: the smooth structure is computed once
/// per `k × k` block.
fn render_scale(width: usize) -> usize {
    if width >= 1800 {
        6
    } else if width >= 1000 {
        4
    } else if width >= 200 {
        2
    } else {
        1
    }
}

/// Renders one image and encodes it; returns the JPEG and the fovea position.
fn render_jpeg(p: &Plan, quality: u8) -> Result<(Vec<u8>, (f64, f64))> {
    let sc = scene(p);
    let k = render_scale(p.w);
    let (lw, lh) = (p.w.div_ceil(k), p.h.div_ceil(k));
    let kf = k as f32;
    let mut va = vec![0f32; lw * lh];
    let mut vd = vec![0f32; lw * lh];
    raster(&sc.vessels, lw, lh, kf, &mut va, &mut vd);
    let mut ca = vec![0f32; lw * lh];
    let mut cd = vec![0f32; lw * lh];
    raster(&sc.les.cracks, lw, lh, kf, &mut ca, &mut cd);
    let mut low = vec![0f32; lw * lh * 3];
    for iy in 0..lh {
        for ix in 0..lw {
            let i = iy * lw + ix;
            let c = shade(
                &sc,
                (ix as f32 + 0.5) * kf,
                (iy as f32 + 0.5) * kf,
                (va[i], vd[i]),
                ca[i],
            );
            low[i * 3..i * 3 + 3].copy_from_slice(&[c[0] * 255.0, c[1] * 255.0, c[2] * 255.0]);
        }
    }
    // Upsample bilinearly to full size and add a fine luminance grain:
    // interpolate every low-res row horizontally to full width, then each
    // output row is a straight (vectorisable) vertical blend of two of them.
    let (w, h) = (sc.w, sc.h);
    let xs: Vec<(usize, usize, f32)> = (0..w)
        .map(|x| {
            let f = ((x as f32 + 0.5) / kf - 0.5).clamp(0.0, (lw - 1) as f32);
            let x0 = (f.floor() as usize).min(lw.saturating_sub(2));
            let x1 = (x0 + 1).min(lw - 1);
            (x0 * 3, x1 * 3, f - x0 as f32)
        })
        .collect();
    let mut hrows = vec![0f32; lh * w * 3];
    for (lrow, hrow) in low.chunks_exact(lw * 3).zip(hrows.chunks_exact_mut(w * 3)) {
        for (px, &(x0, x1, tx)) in hrow.chunks_exact_mut(3).zip(&xs) {
            for ch in 0..3 {
                let (a, b) = (lrow[x0 + ch], lrow[x1 + ch]);
                px[ch] = a + (b - a) * tx;
            }
        }
    }
    // The grain: a per-image table of luminance steps (one value per pixel,
    // repeated over its three channels), read at a pseudo-random offset per row.
    const GRAIN_SPAN: usize = 4096;
    let mut state = sc.noise_seed | 1;
    let mut xorshift = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let grain: Vec<f32> = (0..w + GRAIN_SPAN)
        .flat_map(|_| {
            let n = ((xorshift() >> 29) as f32 - 3.5) * 0.4;
            [n; 3]
        })
        .collect();
    let mut rgb = vec![0u8; w * h * 3];
    for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
        let fy = ((y as f32 + 0.5) / kf - 0.5).clamp(0.0, (lh - 1) as f32);
        let y0 = (fy.floor() as usize).min(lh.saturating_sub(2));
        let y1 = (y0 + 1).min(lh - 1);
        let ty = fy - y0 as f32;
        let (r0, r1) = (
            &hrows[y0 * w * 3..(y0 + 1) * w * 3],
            &hrows[y1 * w * 3..(y1 + 1) * w * 3],
        );
        let off = (xorshift() as usize % GRAIN_SPAN) * 3;
        let g = &grain[off..off + w * 3];
        for (((o, &a), &b), &n) in row.iter_mut().zip(r0).zip(r1).zip(g) {
            let v = a + (b - a) * ty;
            let v = v + if v > 4.0 { n } else { 0.0 };
            // Truncation to 0..=255 via the float's mantissa (vectorises,
            // unlike a saturating `as u8`).
            *o = ((v - 0.5).clamp(0.0, 255.0) + 8_388_608.0).to_bits() as u8;
        }
    }
    let mut out = Vec::with_capacity(w * h / 4);
    let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    enc.encode(&rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| DataError::Io {
            path: PathBuf::from(&p.name),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok((out, (sc.fovea.0 as f64, sc.fovea.1 as f64)))
}
