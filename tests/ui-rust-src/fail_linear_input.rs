// The flatten gives 300,000 features; a linear layer that takes 299,999 does not accept them.
use dfdx::prelude::*;
use dfdx::nn::modules::Linear;
use palm_cnn::nn::{Conv2d, Flatten};

palm_cnn::network! {
    pub struct Mismatch: [16, 53, 53] -> [64] {
        conv3: Conv2d<16, 120, 4, 1, 0, 50, 50, E, D>,
        flatten: Flatten<300_000>,
        fc1: Linear<299_999, 64, E, D>,
    }
}

fn main() {
    let dev = Cpu::default();
    let net = dev.build_module::<Mismatch, f32>();
    let _ = net.forward(dev.zeros::<Rank4<1, 16, 53, 53>>());
}
