//! Compile-time messages for shape checks.
//!
//! `panic!` in a const block accepts a `&str` argument but cannot format numbers, so
//! [`ConstMessage`] builds the message in a fixed buffer at compile time.

/// A message assembled in a `const fn`, e.g.
/// `ConstMessage::new().text("expected ").number(28).as_str()`.
#[derive(Clone, Copy)]
pub struct ConstMessage {
    buf: [u8; 512],
    len: usize,
}

impl ConstMessage {
    /// An empty message.
    pub const fn new() -> Self {
        Self { buf: [0; 512], len: 0 }
    }

    /// Appends text; anything past the buffer's 512 bytes is dropped.
    pub const fn text(mut self, s: &str) -> Self {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() && self.len < self.buf.len() {
            self.buf[self.len] = bytes[i];
            self.len += 1;
            i += 1;
        }
        self
    }

    /// Appends a number in decimal.
    pub const fn number(mut self, mut value: usize) -> Self {
        let mut digits = [0u8; 20];
        let mut count = 0;
        loop {
            digits[count] = b'0' + (value % 10) as u8;
            count += 1;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        while count > 0 && self.len < self.buf.len() {
            count -= 1;
            self.buf[self.len] = digits[count];
            self.len += 1;
        }
        self
    }

    /// The message so far.
    pub const fn as_str(&self) -> &str {
        let (used, _) = self.buf.split_at(self.len);
        match core::str::from_utf8(used) {
            Ok(s) => s,
            // Only whole UTF-8 strings are ever appended, unless truncation split one.
            Err(_) => "shape check failed (message truncated)",
        }
    }
}

impl Default for ConstMessage {
    fn default() -> Self {
        Self::new()
    }
}

/// Output size of a sliding window along one axis, for const contexts; panics at compile time
/// with a message when the window does not fit.
pub const fn window_output(
    layer: &str,
    axis: &str,
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> usize {
    match crate::ops::window_output_size(input, kernel, stride, padding) {
        Some(n) => n,
        None => {
            let m = ConstMessage::new()
                .text(layer)
                .text(": a window of ")
                .number(kernel)
                .text(" (stride ")
                .number(stride)
                .text(", padding ")
                .number(padding)
                .text(") does not fit an input ")
                .text(axis)
                .text(" of ")
                .number(input);
            panic!("{}", m.as_str())
        }
    }
}

/// Panics at compile time unless `declared == computed`, naming the layer, the axis, the
/// declared size and the size the input gives.
pub const fn check_output(layer: &str, axis: &str, input: usize, declared: usize, computed: usize) {
    if declared != computed {
        let m = ConstMessage::new()
            .text(layer)
            .text(": declared output ")
            .text(axis)
            .text(" ")
            .number(declared)
            .text(", but an input ")
            .text(axis)
            .text(" of ")
            .number(input)
            .text(" gives ")
            .number(computed);
        panic!("{}", m.as_str())
    }
}

/// Panics at compile time unless the input has the channel count the layer expects.
pub const fn check_channels(layer: &str, input: usize, expected: usize) {
    if input != expected {
        let m = ConstMessage::new()
            .text(layer)
            .text(": input has ")
            .number(input)
            .text(" channels, but the layer expects ")
            .number(expected);
        panic!("{}", m.as_str())
    }
}
