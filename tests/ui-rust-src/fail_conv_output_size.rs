// A 5×5 convolution of a 32×32 input gives 28×28; declaring 27×27 must not build.
use dfdx::prelude::*;
use dfdx::nn::modules::Linear;
use palm_cnn::nn::{Conv2d, Flatten};

palm_cnn::network! {
    pub struct Wrong: [1, 32, 32] -> [10] {
        conv1: Conv2d<1, 6, 5, 1, 0, 27, 27, E, D>,
        act1: Sigmoid,
        flatten: Flatten<4374>,
        fc1: Linear<4374, 10, E, D>,
    }
}

fn main() {
    let dev = Cpu::default();
    let net = dev.build_module::<Wrong, f32>();
    let _ = net.forward(dev.zeros::<Rank4<1, 1, 32, 32>>());
}
