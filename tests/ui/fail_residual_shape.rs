// A bottleneck with an identity shortcut around a block that turns 64 channels into 256:
// the two sides of the residual sum differ.
use dfdx::prelude::*;
use palm_cnn::models::Bottleneck;
use palm_cnn::nn::Identity;

fn main() {
    let dev = Cpu::default();
    let block = dev.build_module::<Bottleneck<64, 64, 256, 1, 56, 56, Identity>, f32>();
    let _ = block.forward(dev.zeros::<Rank4<1, 64, 56, 56>>());
}
