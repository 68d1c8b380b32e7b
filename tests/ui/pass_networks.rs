// A correct network, written with the macro and as a tuple, builds and runs.
use dfdx::prelude::*;
use dfdx::nn::modules::Linear;
use palm_cnn::nn::{Conv2d, Flatten, MaxPool2d};

palm_cnn::network! {
    pub struct SmallLeNet: [1, 32, 32] -> [10] {
        conv1: Conv2d<1, 6, 5, 1, 0, 28, 28, E, D>,
        act1: Sigmoid,
        pool1: MaxPool2d<2, 2, 14, 14>,
        flatten: Flatten<1176>,
        fc1: Linear<1176, 10, E, D>,
    }
}

fn main() {
    let dev = Cpu::default();
    let net = dev.build_module::<SmallLeNet, f32>();
    let y = net.forward(dev.zeros::<Rank4<2, 1, 32, 32>>());
    assert_eq!(y.shape().concrete(), [2, 10]);
    let tuple = dev.build_module::<(Conv2d<3, 8, 3, 2, 1, 16, 16>, ReLU), f32>();
    let y = tuple.forward(dev.zeros::<Rank4<1, 3, 32, 32>>());
    assert_eq!(y.shape().concrete(), [1, 8, 16, 16]);
}
