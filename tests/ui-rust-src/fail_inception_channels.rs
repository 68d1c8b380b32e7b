// An Inception block declared with 250 output channels; its branches give 64 + 128 + 32 + 32.
use dfdx::prelude::*;
use palm_cnn::models::Inception;

fn main() {
    let dev = Cpu::default();
    let block = dev.build_module::<Inception<192, 64, 96, 128, 16, 32, 32, 250, 56>, f32>();
    let _ = block.forward(dev.zeros::<Rank4<1, 192, 56, 56>>());
}
