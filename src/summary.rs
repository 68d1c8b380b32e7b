//! Layer-shape summaries: layer name, output shape and parameter count, as text or HTML.

use dfdx::prelude::*;
use std::fmt;

/// One layer's row in a [`Summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRow {
    /// The course's layer name (`conv1`, `pool1`, …).
    pub name: String,
    /// The layer type without module path or generic arguments (`Conv2d`, `Linear`, …).
    pub kind: String,
    /// The output shape for the summary's batch, batch first.
    pub output_shape: Vec<usize>,
    /// Trainable parameters of this layer.
    pub params: usize,
}

/// A model's layer-shape table for one batch size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The model's type name.
    pub model: String,
    /// The input shape, batch first.
    pub input_shape: Vec<usize>,
    /// One row per layer, in forward order.
    pub rows: Vec<LayerRow>,
}

/// Models that can print their layer-shape table.
pub trait Summarize {
    /// Runs a random batch of `batch` inputs through the model and records each layer's output.
    fn summary(&self, batch: usize) -> Summary;
}

fn dims<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Vec<usize> {
    t.shape().concrete().into_iter().collect()
}

/// `palm_cnn::nn::conv::Conv2d<1, 6, ...>` → `Conv2d`.
fn short_type_name(full: &str) -> String {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_string()
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
        }
    }

    /// Records one layer's output.
    pub fn push<S: Shape, T>(&mut self, name: &str, type_name: &str, output: &Tensor<S, f32, Cpu, T>, params: usize) {
        self.rows.push(LayerRow {
            name: name.to_string(),
            kind: short_type_name(type_name),
            output_shape: dims(output),
            params,
        });
    }

    /// Total trainable parameters.
    pub fn total_params(&self) -> usize {
        self.rows.iter().map(|r| r.params).sum()
    }

    /// The table as HTML, for notebooks.
    pub fn to_html(&self) -> String {
        let mut html = format!(
            "<table><caption>{} — input {}</caption><thead><tr><th>layer</th><th>type</th><th>output shape</th><th>parameters</th></tr></thead><tbody>",
            self.model,
            shape_text(&self.input_shape)
        );
        for r in &self.rows {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:right\">{}</td></tr>",
                r.name,
                r.kind,
                shape_text(&r.output_shape),
                thousands(r.params)
            ));
        }
        html.push_str(&format!(
            "</tbody><tfoot><tr><th colspan=\"3\">total</th><th style=\"text-align:right\">{}</th></tr></tfoot></table>",
            thousands(self.total_params())
        ));
        html
    }

    /// Shows the table as HTML in an evcxr notebook cell.
    pub fn evcxr_display(&self) {
        println!("EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT", self.to_html());
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
        writeln!(f, "{} — input {}", self.model, shape_text(&self.input_shape))?;
        writeln!(
            f,
            "{:<name_w$}  {:<kind_w$}  {:<shape_w$}  {:>12}",
            "layer", "type", "output shape", "parameters"
        )?;
        writeln!(f, "{}", "-".repeat(name_w + kind_w + shape_w + 18))?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<name_w$}  {:<kind_w$}  {:<shape_w$}  {:>12}",
                r.name,
                r.kind,
                shape_text(&r.output_shape),
                thousands(r.params)
            )?;
        }
        writeln!(f, "{}", "-".repeat(name_w + kind_w + shape_w + 18))?;
        write!(
            f,
            "{:<w$}  {:>12}",
            "total",
            thousands(self.total_params()),
            w = name_w + kind_w + shape_w + 4
        )
    }
}
