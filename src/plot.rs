//! Training plots: the loss per batch, the validation metrics per epoch, the ROC curve and
//! the confusion matrix, drawn with plotters as SVG and PNG; and grids of captioned pictures
//! (fundus photos, digits) for the notebooks.
//!
//! Text is rendered with an embedded font (DejaVu Sans, `assets/fonts/`) through plotters'
//! `ab_glyph` backend, so no system font library (fontconfig, freetype) is needed.
//!
//! Each function returns a [`Figure`]: [`Figure::to_svg`], [`Figure::to_png`],
//! [`Figure::save`] (`stem.svg` and `stem.png`) and, in an evcxr notebook,
//! [`Figure::evcxr_display`].

use crate::metrics::{self, Confusion};
use crate::train::History;
use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// DejaVu Sans (free licence, see `assets/fonts/LICENSE-DejaVu.txt`).
static DEJAVU_SANS: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// The font family every figure uses; registered from the embedded bytes.
const FAMILY: &str = "sans-serif";

fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded file is a valid TrueType font; a failure here would be a build error
        // in spirit (corrupt asset), and then text simply fails to render with an error.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS);
    });
}

/// Smoothing factor of the loss curve's exponential moving average (weight of the past).
pub const EMA_SMOOTHING: f64 = 0.9;

/// Exponential moving average with bias correction (as TensorBoard's smoothing):
/// `m_t = s·m_{t-1} + (1 - s)·x_t`, reported as `m_t / (1 - s^t)`. Non-finite inputs are
/// skipped (the previous average is repeated).
pub fn ema(values: &[f64], smoothing: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len());
    let (mut m, mut w) = (0.0f64, 0.0f64);
    for &v in values {
        if v.is_finite() {
            m = smoothing * m + (1.0 - smoothing) * v;
            w = smoothing * w + (1.0 - smoothing);
        }
        out.push(if w > 0.0 { m / w } else { f64::NAN });
    }
    out
}

#[derive(Debug, Clone)]
enum Spec {
    Loss {
        model: String,
        loss: Vec<f64>,
        smooth: Vec<f64>,
        /// Global batch index where each epoch after the first starts.
        boundaries: Vec<usize>,
    },
    Epochs {
        model: String,
        /// Per epoch (1-based): accuracy, AUC, sensitivity, specificity, train loss, val loss.
        epoch: Vec<f64>,
        accuracy: Vec<f64>,
        auc: Vec<Option<f64>>,
        sensitivity: Vec<Option<f64>>,
        specificity: Vec<Option<f64>>,
        train_loss: Vec<f64>,
        val_loss: Vec<f64>,
    },
    Roc {
        points: Vec<(f64, f64)>,
        auc: Option<f64>,
    },
    Confusion {
        /// Rows = true class, columns = predicted class.
        m: [[usize; 2]; 2],
    },
    Images {
        title: String,
        columns: usize,
        tiles: Vec<Tile>,
    },
}

/// One picture of an [`image_grid`]: 8-bit RGB pixels and a caption under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes, row-major, R, G, B.
    pub rgb: Vec<u8>,
    /// Text under the picture (may be empty).
    pub caption: String,
}

impl Tile {
    /// A tile from interleaved RGB bytes, shrunk (bilinear) so that its longer side is at most
    /// `max_side` pixels.
    ///
    /// # Errors
    /// When `rgb` does not hold `width * height * 3` bytes.
    pub fn from_rgb(rgb: &[u8], width: usize, height: usize, max_side: usize, caption: &str) -> Result<Self> {
        anyhow::ensure!(
            width > 0 && height > 0 && rgb.len() == width * height * 3,
            "{} bytes are not a {width}×{height} RGB image",
            rgb.len()
        );
        let scale = (max_side as f64 / width.max(height) as f64).min(1.0);
        let (w, h) = (
            ((width as f64 * scale).round() as usize).max(1),
            ((height as f64 * scale).round() as usize).max(1),
        );
        let rgb = if (w, h) == (width, height) {
            rgb.to_vec()
        } else {
            crate::data::transform::resize_linear(rgb, width, height, 3, w, h)
        };
        Ok(Tile {
            width: w,
            height: h,
            rgb,
            caption: caption.to_string(),
        })
    }

    /// A tile from a model input: planar `channels × side × side` floats in [-1, 1] (the course's
    /// `x/255*2-1`), in channel order `order` (1 channel: grey), shown `zoom` times larger
    /// (nearest neighbour).
    ///
    /// # Errors
    /// When `chw` does not hold `channels * side * side` values or `channels` is not 1 or 3.
    pub fn from_chw(
        chw: &[f32],
        channels: usize,
        side: usize,
        order: crate::data::ChannelOrder,
        zoom: usize,
        caption: &str,
    ) -> Result<Self> {
        anyhow::ensure!(
            (channels == 1 || channels == 3) && chw.len() == channels * side * side && zoom > 0,
            "{} values are not a {channels}×{side}×{side} image (1 or 3 channels)",
            chw.len()
        );
        let plane = side * side;
        let byte = |v: f32| ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
        let (r, b) = match order {
            crate::data::ChannelOrder::Rgb => (0, 2),
            crate::data::ChannelOrder::Bgr => (2, 0),
        };
        let w = side * zoom;
        let mut rgb = Vec::with_capacity(w * w * 3);
        for y in 0..w {
            for x in 0..w {
                let i = (y / zoom) * side + x / zoom;
                if channels == 1 {
                    let g = byte(chw[i]);
                    rgb.extend_from_slice(&[g, g, g]);
                } else {
                    rgb.extend_from_slice(&[byte(chw[r * plane + i]), byte(chw[plane + i]), byte(chw[b * plane + i])]);
                }
            }
        }
        Ok(Tile {
            width: w,
            height: w,
            rgb,
            caption: caption.to_string(),
        })
    }
}

/// Pixels reserved under each tile for its caption.
const CAPTION_H: usize = 26;
/// Pixels reserved above the grid for the title.
const TITLE_H: usize = 40;
/// Gap between tiles.
const GAP: usize = 10;

/// Where the tiles of an image grid go: cells as wide and tall as the largest tile (plus its
/// caption), `columns` to a row, under the title.
struct GridLayout {
    columns: usize,
    cell_w: usize,
    cell_h: usize,
}

impl GridLayout {
    fn new(tiles: &[Tile], columns: usize) -> Self {
        GridLayout {
            columns,
            cell_w: tiles.iter().map(|t| t.width).max().unwrap_or(1).max(60),
            cell_h: tiles.iter().map(|t| t.height).max().unwrap_or(1) + CAPTION_H,
        }
    }

    /// The whole figure's width and height for `n` tiles.
    fn size(&self, n: usize) -> (u32, u32) {
        let rows = n.div_ceil(self.columns);
        (
            (GAP + self.columns * (self.cell_w + GAP)) as u32,
            (TITLE_H + rows * (self.cell_h + GAP)) as u32,
        )
    }

    /// The left and top pixel of cell `k`.
    fn origin(&self, k: usize) -> (usize, usize) {
        (
            GAP + (k % self.columns) * (self.cell_w + GAP),
            TITLE_H + (k / self.columns) * (self.cell_h + GAP),
        )
    }
}

/// Pictures in a grid of `columns` columns, each with its caption, under `title`: one figure
/// (evcxr shows one image per cell). Rendered as a PNG; its SVG form embeds that PNG.
pub fn image_grid(title: &str, tiles: &[Tile], columns: usize) -> Result<Figure> {
    anyhow::ensure!(!tiles.is_empty(), "an image grid needs at least one picture");
    let columns = columns.clamp(1, tiles.len());
    let (width, height) = GridLayout::new(tiles, columns).size(tiles.len());
    Figure::new(
        Spec::Images {
            title: title.to_string(),
            columns,
            tiles: tiles.to_vec(),
        },
        width,
        height,
    )
}

/// Copies the tiles into `rgb` (the figure's `width`-wide RGB buffer), each centred at the top
/// of its grid cell.
fn blit_tiles(rgb: &mut [u8], width: usize, columns: usize, tiles: &[Tile]) {
    let grid = GridLayout::new(tiles, columns);
    for (k, t) in tiles.iter().enumerate() {
        let (left, top) = grid.origin(k);
        let x0 = left + (grid.cell_w - t.width) / 2;
        for y in 0..t.height {
            let dst = ((top + y) * width + x0) * 3;
            rgb[dst..dst + t.width * 3].copy_from_slice(&t.rgb[y * t.width * 3..(y + 1) * t.width * 3]);
        }
    }
}

/// A figure, kept as its data: rendered to SVG on creation and to PNG on demand.
#[derive(Debug, Clone)]
pub struct Figure {
    spec: Spec,
    width: u32,
    height: u32,
    svg: String,
}

impl Figure {
    fn new(spec: Spec, width: u32, height: u32) -> Result<Self> {
        register_fonts();
        let mut svg = String::new();
        if let Spec::Images { .. } = spec {
            use base64::Engine;
            let mut fig = Figure {
                spec,
                width,
                height,
                svg,
            };
            let png = base64::engine::general_purpose::STANDARD.encode(fig.to_png()?);
            fig.svg = format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\"><image width=\"{width}\" height=\"{height}\" href=\"data:image/png;base64,{png}\"/></svg>"
            );
            return Ok(fig);
        }
        {
            let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
            draw(&spec, &root).map_err(|e| anyhow!("drawing SVG: {e}"))?;
            root.present().map_err(|e| anyhow!("writing SVG: {e}"))?;
        }
        Ok(Figure {
            spec,
            width,
            height,
            svg,
        })
    }

    /// Width and height in pixels.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The SVG document.
    pub fn to_svg(&self) -> String {
        self.svg.clone()
    }

    /// The figure as an 8-bit RGB PNG file.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        register_fonts();
        let (w, h) = (self.width, self.height);
        let mut rgb = vec![255u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            draw(&self.spec, &root).map_err(|e| anyhow!("drawing PNG: {e}"))?;
            root.present().map_err(|e| anyhow!("rendering PNG: {e}"))?;
        }
        if let Spec::Images { columns, tiles, .. } = &self.spec {
            blit_tiles(&mut rgb, w as usize, *columns, tiles);
        }
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut wr = enc.write_header().context("encoding PNG")?;
            wr.write_image_data(&rgb).context("encoding PNG")?;
            wr.finish().context("encoding PNG")?;
        }
        Ok(out)
    }

    /// Writes `dir/stem.svg` and `dir/stem.png` (each through a temporary file renamed into
    /// place) and returns their paths.
    pub fn save(&self, dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let png = self.to_png()?;
        let mut paths = Vec::new();
        for (ext, bytes) in [("svg", self.svg.as_bytes()), ("png", png.as_slice())] {
            let path = dir.join(format!("{stem}.{ext}"));
            let tmp = dir.join(format!(".{stem}.{ext}.tmp"));
            std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
            paths.push(path);
        }
        Ok(paths)
    }

    /// Shows the figure in an evcxr (Jupyter) cell as a PNG image. evcxr keeps one output
    /// per MIME type per cell, so show one figure per cell.
    pub fn evcxr_display(&self) {
        use base64::Engine;
        match self.to_png() {
            Ok(png) => println!(
                "EVCXR_BEGIN_CONTENT image/png\n{}\nEVCXR_END_CONTENT",
                base64::engine::general_purpose::STANDARD.encode(png)
            ),
            Err(e) => eprintln!("figure: {e:#}"),
        }
    }
}

/// Training loss of every batch (x = batch index over the whole run), with its exponential
/// moving average ([`EMA_SMOOTHING`]) and a vertical line where each new epoch starts.
pub fn loss_curve(history: &History) -> Result<Figure> {
    let loss: Vec<f64> = history.batches.iter().map(|b| b.loss as f64).collect();
    let smooth = ema(&loss, EMA_SMOOTHING);
    let boundaries = history
        .batches
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1].epoch != w[0].epoch)
        .map(|(i, _)| i + 1)
        .collect();
    Figure::new(
        Spec::Loss {
            model: history.model.clone(),
            loss,
            smooth,
            boundaries,
        },
        900,
        500,
    )
}

/// Validation accuracy, AUC, sensitivity and specificity per epoch (left axis, 0–1) and
/// the training and validation loss per epoch (right axis).
pub fn epoch_metrics(history: &History) -> Result<Figure> {
    let e = &history.epochs;
    Figure::new(
        Spec::Epochs {
            model: history.model.clone(),
            epoch: e.iter().map(|r| r.epoch as f64 + 1.0).collect(),
            accuracy: e.iter().map(|r| r.val_accuracy).collect(),
            auc: e.iter().map(|r| r.val_auc).collect(),
            sensitivity: e.iter().map(|r| r.val_sensitivity).collect(),
            specificity: e.iter().map(|r| r.val_specificity).collect(),
            train_loss: e.iter().map(|r| r.train_loss).collect(),
            val_loss: e.iter().map(|r| r.val_loss).collect(),
        },
        900,
        500,
    )
}

/// ROC curve from its points, (false-positive rate, true-positive rate), as
/// [`metrics::roc_curve`] returns them; `auc` goes into the title when given.
pub fn roc(points: &[(f64, f64)], auc: Option<f64>) -> Result<Figure> {
    Figure::new(
        Spec::Roc {
            points: points.to_vec(),
            auc,
        },
        600,
        600,
    )
}

/// ROC curve from per-sample scores (probability of the positive class) and labels
/// (non-zero = positive), e.g. [`crate::train::Evaluation`]'s `scores` and `labels`.
pub fn roc_from_scores(scores: &[f32], labels: &[u8]) -> Result<Figure> {
    roc(&metrics::roc_curve(scores, labels), metrics::auc(scores, labels))
}

/// Something with a 2×2 confusion matrix: rows = true class, columns = predicted class.
pub trait ConfusionCells {
    /// `[[tn, fp], [fn, tp]]`.
    fn cells(&self) -> [[usize; 2]; 2];
}

impl ConfusionCells for Confusion {
    fn cells(&self) -> [[usize; 2]; 2] {
        self.matrix()
    }
}

impl ConfusionCells for [[usize; 2]; 2] {
    fn cells(&self) -> [[usize; 2]; 2] {
        *self
    }
}

/// Confusion matrix as a heat map with the count (and share of the true class) in each
/// cell. Rows = true class, columns = predicted class; class 1 = pathologic myopia.
pub fn confusion_matrix(c: &impl ConfusionCells) -> Result<Figure> {
    Figure::new(Spec::Confusion { m: c.cells() }, 560, 520)
}

type DrawResult<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn font(size: f64) -> FontDesc<'static> {
    (FAMILY, size).into_font()
}

const RAW: RGBColor = RGBColor(160, 190, 225);
const SMOOTH: RGBColor = RGBColor(31, 90, 170);
const BOUNDARY: RGBColor = RGBColor(150, 150, 150);
const EPOCH_LINE: RGBColor = RGBColor(220, 110, 30);
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(90, 90, 90),
];

fn finite_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    ((lo - pad).max(0.0_f64.min(lo)), hi + pad)
}

fn draw<DB: DrawingBackend>(spec: &Spec, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    match spec {
        Spec::Loss {
            model,
            loss,
            smooth,
            boundaries,
        } => draw_loss(root, model, loss, smooth, boundaries),
        Spec::Epochs { .. } => draw_epochs(root, spec),
        Spec::Roc { points, auc } => draw_roc(root, points, *auc),
        Spec::Confusion { m } => draw_confusion(root, m),
        Spec::Images { title, columns, tiles } => draw_image_captions(root, title, *columns, tiles),
    }
}

/// The title and the captions of an image grid (the pixels are copied in by [`blit_tiles`]).
fn draw_image_captions<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    columns: usize,
    tiles: &[Tile],
) -> DrawResult<DB> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let (width, _) = root.dim_in_pixel();
    let centred = |size: f64| font(size).color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
    root.draw(&Text::new(
        title.to_string(),
        (width as i32 / 2, TITLE_H as i32 / 2),
        centred(22.0),
    ))?;
    let grid = GridLayout::new(tiles, columns);
    for (k, t) in tiles.iter().enumerate() {
        let (left, top) = grid.origin(k);
        let x = left + grid.cell_w / 2;
        let y = top + t.height + CAPTION_H / 2;
        root.draw(&Text::new(t.caption.clone(), (x as i32, y as i32), centred(14.0)))?;
    }
    Ok(())
}

fn draw_loss<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    model: &str,
    loss: &[f64],
    smooth: &[f64],
    boundaries: &[usize],
) -> DrawResult<DB> {
    let n = loss.len().max(2);
    let (lo, hi) = finite_range(loss.iter().copied());
    let mut chart = ChartBuilder::on(root)
        .caption(format!("Training loss per batch — {model}"), font(24.0))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0f64..(n - 1) as f64, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("batch")
        .y_desc("loss")
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .label_style(font(14.0))
        .axis_desc_style(font(16.0))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (k, &b) in boundaries.iter().enumerate() {
        let s = chart.draw_series(LineSeries::new(
            [(b as f64, lo), (b as f64, hi)],
            EPOCH_LINE.stroke_width(2),
        ))?;
        if k == 0 {
            s.label("epoch start")
                .legend(|(x, y)| PathElement::new([(x, y - 6), (x, y + 6)], EPOCH_LINE.stroke_width(2)));
        }
    }
    let finite = |v: &[f64]| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .filter(|(_, y)| y.is_finite())
            .map(|(i, &y)| (i as f64, y))
            .collect()
    };
    chart
        .draw_series(LineSeries::new(finite(loss), RAW.stroke_width(1)))?
        .label("batch loss")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RAW.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(finite(smooth), SMOOTH.stroke_width(2)))?
        .label(format!("moving average (smoothing {EMA_SMOOTHING})"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], SMOOTH.stroke_width(2)));
    chart
        .configure_series_labels()
        .label_font(font(14.0))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

fn draw_epochs<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, spec: &Spec) -> DrawResult<DB> {
    let Spec::Epochs {
        model,
        epoch,
        accuracy,
        auc,
        sensitivity,
        specificity,
        train_loss,
        val_loss,
    } = spec
    else {
        unreachable!()
    };
    let n = epoch.len().max(1) as f64;
    let (_, loss_hi) = finite_range(train_loss.iter().chain(val_loss.iter()).copied());
    let mut chart = ChartBuilder::on(root)
        .caption(format!("Validation metrics per epoch — {model}"), font(24.0))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .right_y_label_area_size(65)
        .build_cartesian_2d(0.5f64..n + 0.5, 0f64..1.05)?
        .set_secondary_coord(0.5f64..n + 0.5, 0f64..loss_hi);
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("accuracy / AUC / sensitivity / specificity")
        .x_labels(epoch.len().clamp(2, 12))
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{}", x.round() as i64)
            } else {
                String::new()
            }
        })
        .label_style(font(14.0))
        .axis_desc_style(font(16.0))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("loss (dashed)")
        .label_style(font(14.0))
        .axis_desc_style(font(16.0))
        .draw()?;
    let series: [(&str, Vec<Option<f64>>); 4] = [
        ("accuracy", accuracy.iter().map(|&v| Some(v)).collect()),
        ("AUC", auc.clone()),
        ("sensitivity", sensitivity.clone()),
        ("specificity", specificity.clone()),
    ];
    for (k, (name, values)) in series.iter().enumerate() {
        let pts: Vec<(f64, f64)> = epoch
            .iter()
            .zip(values)
            .filter_map(|(&x, v)| v.filter(|v| v.is_finite()).map(|v| (x, v)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let c = PALETTE[k];
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
    }
    for (k, (name, values)) in [("train loss", train_loss), ("validation loss", val_loss)]
        .into_iter()
        .enumerate()
    {
        let pts: Vec<(f64, f64)> = epoch
            .iter()
            .zip(values)
            .filter(|(_, v)| v.is_finite())
            .map(|(&x, &v)| (x, v))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let c = PALETTE[4 + k];
        chart
            .draw_secondary_series(DashedLineSeries::new(pts.clone(), 8, 5, c.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_secondary_series(pts.iter().map(|&p| TriangleMarker::new(p, 5, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .label_font(font(14.0))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    Ok(())
}

fn draw_roc<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: &[(f64, f64)],
    auc: Option<f64>,
) -> DrawResult<DB> {
    let title = match auc {
        Some(a) => format!("ROC curve (AUC {a:.3})"),
        None => "ROC curve".to_string(),
    };
    let mut chart = ChartBuilder::on(root)
        .caption(title, font(24.0))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..1.0, 0f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc("false-positive rate (1 − specificity)")
        .y_desc("true-positive rate (sensitivity)")
        .label_style(font(14.0))
        .axis_desc_style(font(16.0))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            6,
            4,
            BOUNDARY.stroke_width(1),
        ))?
        .label("chance")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BOUNDARY.stroke_width(1)));
    chart
        .draw_series(LineSeries::new(points.iter().copied(), SMOOTH.stroke_width(2)))?
        .label("model")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], SMOOTH.stroke_width(2)));
    chart
        .configure_series_labels()
        .label_font(font(14.0))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    Ok(())
}

const CLASS_NAMES: [&str; 2] = ["0 normal", "1 myopia"];

fn draw_confusion<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, m: &[[usize; 2]; 2]) -> DrawResult<DB> {
    let max = m.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    // y = 1 is the top row (true class 0), y = 0 the bottom row (true class 1).
    let mut chart = ChartBuilder::on(root)
        .caption("Confusion matrix (validation)", font(24.0))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(90)
        .build_cartesian_2d((0i32..1).into_segmented(), (0i32..1).into_segmented())?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("predicted class")
        .y_desc("true class")
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if (0..2).contains(i) => CLASS_NAMES[*i as usize].to_string(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if (0..2).contains(i) => CLASS_NAMES[1 - *i as usize].to_string(),
            _ => String::new(),
        })
        .label_style(font(15.0))
        .axis_desc_style(font(16.0))
        .draw()?;
    for (row, cells) in m.iter().enumerate() {
        let row_total: usize = cells.iter().sum();
        for (col, &count) in cells.iter().enumerate() {
            let y = 1 - row as i32;
            let x = col as i32;
            let t = count as f64 / max;
            let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * t).round() as u8;
            let fill = RGBColor(lerp(247, 8), lerp(251, 69), lerp(255, 148));
            chart.draw_series(std::iter::once(Rectangle::new(
                [
                    (SegmentValue::Exact(x), SegmentValue::Exact(y + 1)),
                    (SegmentValue::Exact(x + 1), SegmentValue::Exact(y)),
                ],
                fill.filled(),
            )))?;
            let ink = if t > 0.5 { WHITE } else { BLACK };
            let share = if row_total > 0 {
                format!("{:.1}% of true {}", 100.0 * count as f64 / row_total as f64, row)
            } else {
                String::new()
            };
            let centre = (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y));
            let pos = chart.backend_coord(&centre);
            let big = font(34.0).color(&ink).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ));
            let small = font(14.0).color(&ink).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ));
            root.draw(&Text::new(count.to_string(), (pos.0, pos.1 - 10), big))?;
            root.draw(&Text::new(share, (pos.0, pos.1 + 22), small))?;
        }
    }
    Ok(())
}
