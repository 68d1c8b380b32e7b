//! AlexNet, the course's single-tower variant for 224×224 inputs and one output logit.

use crate::nn::{Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU};

crate::network! {
    /// AlexNet (course variant): 3×224×224 → one logit. 71,916,929 parameters.
    pub struct AlexNet: [3, 224, 224] -> [1], cam_layer = act5 {
        conv1: Conv2d<3, 96, 11, 4, 5, 56, 56, E, D>,
        act1: ReLU,
        pool1: MaxPool2d<2, 2, 28, 28>,
        conv2: Conv2d<96, 256, 5, 1, 2, 28, 28, E, D>,
        act2: ReLU,
        pool2: MaxPool2d<2, 2, 14, 14>,
        conv3: Conv2d<256, 384, 3, 1, 1, 14, 14, E, D>,
        act3: ReLU,
        conv4: Conv2d<384, 384, 3, 1, 1, 14, 14, E, D>,
        act4: ReLU,
        conv5: Conv2d<384, 256, 3, 1, 1, 14, 14, E, D>,
        act5: ReLU,
        pool5: MaxPool2d<2, 2, 7, 7>,
        flatten: Flatten<12_544>,
        fc1: Linear<12_544, 4096, E, D>,
        act6: ReLU,
        drop1: Dropout,
        fc2: Linear<4096, 4096, E, D>,
        act7: ReLU,
        drop2: Dropout,
        fc3: Linear<4096, 1, E, D>,
    }
}
