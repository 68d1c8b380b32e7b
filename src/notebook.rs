//! What the evcxr notebooks in `notebooks/` need beyond the rest of the library: the quick mode
//! their runner uses in CI, where they find data, and small displays (HTML tables, image grids
//! of samples and digits).
//!
//! Quick mode: when the environment variable [`QUICK_ENV`] (`PALM_CNN_QUICK`) is set to
//! anything but `0` or the empty string, the notebooks train on fewer images for fewer epochs
//! and use a smaller synthetic set, so that all of them run in a few minutes.

use crate::data::{self, mnist::Mnist, Sample};
use crate::network::{Datasets, Network};
use crate::plot::{self, Figure, Tile};
use anyhow::{Context, Result};
use std::path::PathBuf;

/// The environment variable that turns quick mode on.
pub const QUICK_ENV: &str = "PALM_CNN_QUICK";

/// The image size of the synthetic set in quick mode (the real sizes take about a minute and a
/// half to generate on two cores; this takes seconds).
pub const QUICK_SYNTH_SIZE: (usize, usize) = (512, 496);

/// True when [`QUICK_ENV`] asks for quick mode.
pub fn quick() -> bool {
    std::env::var(QUICK_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `full` normally, `quick` in quick mode.
pub fn pick<T>(full: T, quick_value: T) -> T {
    if quick() {
        quick_value
    } else {
        full
    }
}

/// The iChallenge-PM folder the notebooks use: `$PALM_DATA` when set (the real data), else the
/// synthetic set at the real image sizes, or at [`QUICK_SYNTH_SIZE`] in quick mode; generated
/// once into the cache folder.
pub fn data_dir() -> Result<PathBuf> {
    if std::env::var_os("PALM_DATA").is_some_and(|v| !v.is_empty()) || !quick() {
        return data::default_data_dir().context("preparing the data set");
    }
    data::synth::cached_data_dir(data::synth::DEFAULT_SEED, Some(QUICK_SYNTH_SIZE), false)
        .context("preparing the quick-mode synthetic data set")
}

/// HTML to show in a notebook cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Html(pub String);

impl Html {
    /// A table with a header row; cells are escaped.
    pub fn table<R: AsRef<str>>(caption: &str, header: &[&str], rows: &[Vec<R>]) -> Html {
        let mut s = format!("<table><caption>{}</caption><thead><tr>", escape(caption));
        for h in header {
            s.push_str(&format!("<th>{}</th>", escape(h)));
        }
        s.push_str("</tr></thead><tbody>");
        for r in rows {
            s.push_str("<tr>");
            for c in r {
                s.push_str(&format!("<td>{}</td>", escape(c.as_ref())));
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table>");
        Html(s)
    }

    /// Shows it in an evcxr cell.
    pub fn evcxr_display(&self) {
        println!("EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT", self.0);
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A fundus photo as a tile: decoded (RGB, DCT-scaled when the JPEG allows it) and shrunk so
/// its longer side is `max_side` pixels.
///
/// # Errors
/// An unreadable or undecodable image, named.
pub fn fundus_tile(sample: &Sample, max_side: usize, caption: &str) -> Result<Tile> {
    let bytes = sample.source.read()?;
    let img = data::image::decode(
        &bytes,
        &sample.source.display_path(),
        data::DecodeMode::Fast,
        Some((max_side, max_side)),
    )?;
    Tile::from_rgb(&img.data, img.width, img.height, max_side, caption)
}

/// A grid of fundus photos with one caption each (`captions[k]` under `samples[k]`).
pub fn fundus_grid(
    title: &str,
    samples: &[&Sample],
    captions: &[String],
    columns: usize,
    max_side: usize,
) -> Result<Figure> {
    anyhow::ensure!(
        samples.len() == captions.len(),
        "{} photos but {} captions",
        samples.len(),
        captions.len()
    );
    let tiles = samples
        .iter()
        .zip(captions)
        .map(|(s, c)| fundus_tile(s, max_side, c))
        .collect::<Result<Vec<_>>>()?;
    plot::image_grid(title, &tiles, columns)
}

/// Digits `which` of `set` as model input: `1×28×28` floats each, scaled to [-1, 1] like the
/// course (and like [`crate::train::InMemory::from_mnist`]).
pub fn mnist_inputs(set: &Mnist, which: &[usize]) -> Result<Vec<f32>> {
    let scale = data::mnist::MnistScale::MinusOneToOne;
    let mut out = Vec::with_capacity(which.len() * 28 * 28);
    for &i in which {
        anyhow::ensure!(i < set.len(), "digit {i} out of range 0..{}", set.len());
        out.extend(set.image(i).iter().map(|&b| scale.apply(b)));
    }
    Ok(out)
}

/// A grid of MNIST digits (indices `which` into `set`), zoomed 3×, with one caption each.
pub fn digit_grid(title: &str, set: &Mnist, which: &[usize], captions: &[String], columns: usize) -> Result<Figure> {
    anyhow::ensure!(
        which.len() == captions.len(),
        "{} digits but {} captions",
        which.len(),
        captions.len()
    );
    let inputs = mnist_inputs(set, which)?;
    let tiles = inputs
        .chunks(28 * 28)
        .zip(captions)
        .map(|(px, c)| Tile::from_chw(px, 1, 28, data::ChannelOrder::Rgb, 3, c))
        .collect::<Result<Vec<_>>>()?;
    plot::image_grid(title, &tiles, columns)
}

/// The first `n` validation images of iChallenge-PM `data` as model input (`3×224×224` floats
/// each, in [-1, 1]), e.g. for [`crate::network::Network::profile`].
pub fn valid_inputs(data: &Datasets, n: usize) -> Result<Vec<f32>> {
    match data {
        Datasets::Palm { valid, .. } => {
            let mut out = Vec::new();
            for i in 0..n.min(valid.len()) {
                out.extend(valid.image(i)?);
            }
            Ok(out)
        }
        Datasets::Mnist { valid, .. } => Ok(valid.images[..n.min(valid.labels.len()) * 28 * 28].to_vec()),
    }
}

/// Grad-CAM overlays ([`crate::explain::overlay_pairs`]) of `count` pathologic validation
/// photos of `data`, spread over the split: each photo beside the map of the network's last
/// convolutional stage, captioned with its name.
///
/// # Errors
/// Digit data, no pathologic photo, or an unreadable photo.
pub fn grad_cam_figure(network: &Network, data: &Datasets, count: usize) -> Result<Figure> {
    let Datasets::Palm { valid, .. } = data else {
        anyhow::bail!("Grad-CAM figures are for fundus photos");
    };
    let positives: Vec<usize> = (0..valid.len()).filter(|&i| valid.samples()[i].label == 1).collect();
    anyhow::ensure!(!positives.is_empty(), "no pathologic photo in the validation split");
    let count = count.clamp(1, positives.len());
    let picked: Vec<usize> = (0..count).map(|k| positives[k * positives.len() / count]).collect();
    let mut inputs = Vec::with_capacity(count * 3 * 224 * 224);
    for &i in &picked {
        inputs.extend(valid.image(i)?);
    }
    let explanations = network.grad_cam(&inputs, None)?;
    let captions: Vec<String> = picked.iter().map(|&i| valid.samples()[i].name.clone()).collect();
    crate::explain::overlay_pairs(
        &format!("{}: Grad-CAM on pathologic validation photos", network.kind()),
        &inputs,
        &explanations,
        &captions,
    )
}

/// Grad-CAM's lesion share over (at most `limit`) pathologic validation photos of `data`,
/// against the lesion masks of the synthetic set in [`data_dir`].
///
/// # Errors
/// A data folder without masks (real photos), or what [`Network::lesion_report`] reports.
pub fn lesion_report(network: &Network, data: &Datasets, limit: Option<usize>) -> Result<crate::explain::LesionReport> {
    let dir = data_dir()?;
    let masks = data::synth::LesionMasks::for_data_dir(&dir)
        .with_context(|| format!("{} is not a synthetic set with lesion masks", dir.display()))?;
    network.lesion_report(data, &masks, None, limit)
}
