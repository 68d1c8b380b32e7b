//! Layer-shape summaries: layer name, output shape and parameter count, as text or HTML; and
//! layer profiles, which add the value range of every layer's output for real inputs (to see
//! saturated sigmoids or dead ReLUs).

use dfdx::prelude::*;
use std::fmt;

/// Statistics of the values of one layer's output over a whole batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueStats {
    /// Smallest value.
    pub min: f32,
    /// Largest value.
    pub max: f32,
    /// Mean.
    pub mean: f32,
    /// Standard deviation (population).
    pub std: f32,
}

impl ValueStats {
    /// Statistics of `values` (accumulated in f64); `None` when empty.
    pub fn of(values: &[f32]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
        let (mut sum, mut sum_sq) = (0.0f64, 0.0f64);
        for &v in values {
            min = min.min(v);
            max = max.max(v);
            sum += v as f64;
            sum_sq += v as f64 * v as f64;
        }
        let n = values.len() as f64;
        let mean = sum / n;
        let var = (sum_sq / n - mean * mean).max(0.0);
        Some(ValueStats {
            min,
            max,
            mean: mean as f32,
            std: var.sqrt() as f32,
        })
    }
}

/// One layer's row in a [`Summary`].
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRow {
    /// The course's layer name (`conv1`, `pool1`, …).
    pub name: String,
    /// The layer type without module path or generic arguments (`Conv2d`, `Linear`, …).
    pub kind: String,
    /// The output shape for the summary's batch, batch first.
    pub output_shape: Vec<usize>,
    /// Trainable parameters of this layer.
    pub params: usize,
    /// Value statistics of the output (profiles only, see [`Summarize::profile`]).
    pub stats: Option<ValueStats>,
}

/// A model's layer-shape table for one batch size.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The model's type name.
    pub model: String,
    /// The input shape, batch first.
    pub input_shape: Vec<usize>,
    /// One row per layer, in forward order.
    pub rows: Vec<LayerRow>,
    /// Whether rows record [`ValueStats`] of their outputs.
    pub profiled: bool,
}

/// Models that can print their layer-shape table.
pub trait Summarize {
    /// Runs a random batch of `batch` inputs through the model and records each layer's output.
    fn summary(&self, batch: usize) -> Summary;

    /// Runs `inputs` (whole samples, flattened; in evaluation mode, dropout off) through the
    /// model and records each layer's output shape and [`ValueStats`].
    ///
    /// # Errors
    /// When `inputs` is empty or not a whole number of samples.
    fn profile(&self, inputs: &[f32]) -> anyhow::Result<Summary>;
}

fn dims<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Vec<usize> {
    t.shape().concrete().into_iter().collect()
}

/// `palm_cnn::nn::conv::Conv2d<1, 6, ...>` → `Conv2d`; blocks with branches spell them out
/// (see [`describe_block`]).
fn short_type_name(full: &str) -> String {
    let base = full.split('<').next().unwrap_or(full);
    let short = base.rsplit("::").next().unwrap_or(base);
    describe_block(short, full).unwrap_or_else(|| short.to_string())
}

/// The leading numeric generic arguments of a type name: `X<3, 64, 7, f32, …>` → `[3, 64, 7]`.
fn const_args(full: &str) -> Vec<usize> {
    let Some((_, args)) = full.split_once('<') else {
        return Vec::new();
    };
    args.split(',').map_while(|a| a.trim().parse().ok()).collect()
}

/// A one-line description of an Inception block's branches or a bottleneck's path, from the
/// const arguments of its type: `Inception 64 | 96→128 | 16→32 | pool→32`,
/// `Bottleneck 64→64/2→256 +proj`.
fn describe_block(short: &str, full: &str) -> Option<String> {
    let a = const_args(full);
    match (short, a.as_slice()) {
        ("Inception", [_, c1, c2a, c2b, c3a, c3b, c4, ..]) => Some(format!(
            "Inception 1×1 {c1} | 1×1 {c2a}→3×3 {c2b} | 1×1 {c3a}→5×5 {c3b} | pool→1×1 {c4}"
        )),
        ("Bottleneck", [_, width, out, stride, ..]) => {
            let shortcut = if full.contains("Identity") {
                "identity"
            } else {
                "projection"
            };
            let stride = if *stride > 1 {
                format!(" stride {stride}")
            } else {
                String::new()
            };
            Some(format!(
                "Bottleneck 1×1 {width}→3×3 {width}{stride}→1×1 {out}, {shortcut}"
            ))
        }
        _ => None,
    }
}

fn shape_text(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Summary {
    /// Starts a summary for `model` fed with `input`.
    pub fn new<S: Shape, T>(model: &str, input: &Tensor<S, f32, Cpu, T>) -> Self {
        Self {
            model: model.to_string(),
            input_shape: dims(input),
            rows: Vec::new(),
            profiled: false,
        }
    }

    /// Starts a profile: like [`Summary::new`], and every pushed row records [`ValueStats`].
    pub fn profiled<S: Shape, T>(model: &str, input: &Tensor<S, f32, Cpu, T>) -> Self {
        Self {
            profiled: true,
            ..Self::new(model, input)
        }
    }

    /// Records one layer's output.
    pub fn push<S: Shape, T>(&mut self, name: &str, type_name: &str, output: &Tensor<S, f32, Cpu, T>, params: usize) {
        self.rows.push(LayerRow {
            name: name.to_string(),
            kind: short_type_name(type_name),
            output_shape: dims(output),
            params,
            stats: if self.profiled {
                ValueStats::of(&output.as_vec())
            } else {
                None
            },
        });
    }

    /// Total trainable parameters.
    pub fn total_params(&self) -> usize {
        self.rows.iter().map(|r| r.params).sum()
    }

    /// The table as HTML, for notebooks.
    pub fn to_html(&self) -> String {
        let stat_heads = if self.profiled {
            "<th>min</th><th>mean</th><th>std</th><th>max</th>"
        } else {
            ""
        };
        let mut html = format!(
            "<table><caption>{} — input {}</caption><thead><tr><th>layer</th><th>type</th><th>output shape</th><th>parameters</th>{stat_heads}</tr></thead><tbody>",
            self.model,
            shape_text(&self.input_shape)
        );
        let right = "<td style=\"text-align:right\">";
        for r in &self.rows {
            let stats: String = stat_cells(r, self.profiled)
                .iter()
                .map(|c| format!("{right}{c}</td>"))
                .collect();
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td>{right}{}</td>{stats}</tr>",
                r.name,
                r.kind,
                shape_text(&r.output_shape),
                thousands(r.params)
            ));
        }
        html.push_str(&format!(
            "</tbody><tfoot><tr><th colspan=\"3\">total</th><th style=\"text-align:right\">{}</th>{}</tr></tfoot></table>",
            thousands(self.total_params()),
            if self.profiled { "<th colspan=\"4\"></th>" } else { "" }
        ));
        html
    }

    /// Shows the table as HTML in an evcxr notebook cell.
    pub fn evcxr_display(&self) {
        println!("EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT", self.to_html());
    }
}

/// The four statistics columns of a row (`min, mean, std, max`), empty without a profile.
fn stat_cells(row: &LayerRow, profiled: bool) -> Vec<String> {
    match (profiled, row.stats) {
        (false, _) => Vec::new(),
        (true, None) => vec![String::new(); 4],
        (true, Some(v)) => [v.min, v.mean, v.std, v.max]
            .iter()
            .map(|x| format!("{x:.4}"))
            .collect(),
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name_w = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
        let kind_w = self.rows.iter().map(|r| r.kind.len()).max().unwrap_or(4).max(4);
        let shape_w = self
            .rows
            .iter()
            .map(|r| shape_text(&r.output_shape).len())
            .max()
            .unwrap_or(12)
            .max(12);
        let stat_head = if self.profiled {
            format!("  {:>9}  {:>9}  {:>9}  {:>9}", "min", "mean", "std", "max")
        } else {
            String::new()
        };
        let rule = "-".repeat(name_w + kind_w + shape_w + 18 + stat_head.len());
        writeln!(f, "{} — input {}", self.model, shape_text(&self.input_shape))?;
        writeln!(
            f,
            "{:<name_w$}  {:<kind_w$}  {:<shape_w$}  {:>12}{stat_head}",
            "layer", "type", "output shape", "parameters"
        )?;
        writeln!(f, "{rule}")?;
        for r in &self.rows {
            let stats: String = stat_cells(r, self.profiled)
                .iter()
                .map(|c| format!("  {c:>9}"))
                .collect();
            writeln!(
                f,
                "{:<name_w$}  {:<kind_w$}  {:<shape_w$}  {:>12}{stats}",
                r.name,
                r.kind,
                shape_text(&r.output_shape),
                thousands(r.params)
            )?;
        }
        writeln!(f, "{rule}")?;
        write!(
            f,
            "{:<w$}  {:>12}",
            "total",
            thousands(self.total_params()),
            w = name_w + kind_w + shape_w + 4
        )
    }
}
