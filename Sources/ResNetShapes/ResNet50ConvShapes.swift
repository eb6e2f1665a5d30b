/// The convolutions of torchvision's ResNet-50 at 224x224, shared by the kernel tests and benchmarks.
/// Every distinct convolution shape, with how often it occurs.
public struct ConvLayerShape: Sendable {
    public let inChannels, outChannels, kernel, stride, pad, inputSize: Int
    /// Where it sits in the network, for tables.
    public let name: String
    /// How many times ResNet-50 runs this shape per image.
    public let occurrences: Int
    public var outputSize: Int { (inputSize + 2 * pad - kernel) / stride + 1 }
    /// Multiply-accumulates of one forward pass of one occurrence on one image.
    public var macsPerImage: Int { outChannels * outputSize * outputSize * inChannels * kernel * kernel }
}

public let resnet50ConvShapes: [ConvLayerShape] = [
    ConvLayerShape(inChannels: 3, outChannels: 64, kernel: 7, stride: 2, pad: 3, inputSize: 224, name: "conv1 7x7/2", occurrences: 1),
    ConvLayerShape(inChannels: 64, outChannels: 64, kernel: 1, stride: 1, pad: 0, inputSize: 56, name: "layer1 1x1 64→64", occurrences: 1),
    ConvLayerShape(inChannels: 64, outChannels: 64, kernel: 3, stride: 1, pad: 1, inputSize: 56, name: "layer1 3x3 64", occurrences: 3),
    ConvLayerShape(inChannels: 64, outChannels: 256, kernel: 1, stride: 1, pad: 0, inputSize: 56, name: "layer1 1x1 64→256", occurrences: 4),
    ConvLayerShape(inChannels: 256, outChannels: 64, kernel: 1, stride: 1, pad: 0, inputSize: 56, name: "layer1 1x1 256→64", occurrences: 2),
    ConvLayerShape(inChannels: 256, outChannels: 128, kernel: 1, stride: 1, pad: 0, inputSize: 56, name: "layer2.0 1x1 256→128", occurrences: 1),
    ConvLayerShape(inChannels: 128, outChannels: 128, kernel: 3, stride: 2, pad: 1, inputSize: 56, name: "layer2.0 3x3/2 128", occurrences: 1),
    ConvLayerShape(inChannels: 128, outChannels: 512, kernel: 1, stride: 1, pad: 0, inputSize: 28, name: "layer2 1x1 128→512", occurrences: 4),
    ConvLayerShape(inChannels: 256, outChannels: 512, kernel: 1, stride: 2, pad: 0, inputSize: 56, name: "layer2.0 downsample 1x1/2", occurrences: 1),
    ConvLayerShape(inChannels: 512, outChannels: 128, kernel: 1, stride: 1, pad: 0, inputSize: 28, name: "layer2 1x1 512→128", occurrences: 3),
    ConvLayerShape(inChannels: 128, outChannels: 128, kernel: 3, stride: 1, pad: 1, inputSize: 28, name: "layer2 3x3 128", occurrences: 3),
    ConvLayerShape(inChannels: 512, outChannels: 256, kernel: 1, stride: 1, pad: 0, inputSize: 28, name: "layer3.0 1x1 512→256", occurrences: 1),
    ConvLayerShape(inChannels: 256, outChannels: 256, kernel: 3, stride: 2, pad: 1, inputSize: 28, name: "layer3.0 3x3/2 256", occurrences: 1),
    ConvLayerShape(inChannels: 256, outChannels: 1024, kernel: 1, stride: 1, pad: 0, inputSize: 14, name: "layer3 1x1 256→1024", occurrences: 6),
    ConvLayerShape(inChannels: 512, outChannels: 1024, kernel: 1, stride: 2, pad: 0, inputSize: 28, name: "layer3.0 downsample 1x1/2", occurrences: 1),
    ConvLayerShape(inChannels: 1024, outChannels: 256, kernel: 1, stride: 1, pad: 0, inputSize: 14, name: "layer3 1x1 1024→256", occurrences: 5),
    ConvLayerShape(inChannels: 256, outChannels: 256, kernel: 3, stride: 1, pad: 1, inputSize: 14, name: "layer3 3x3 256", occurrences: 5),
    ConvLayerShape(inChannels: 1024, outChannels: 512, kernel: 1, stride: 1, pad: 0, inputSize: 14, name: "layer4.0 1x1 1024→512", occurrences: 1),
    ConvLayerShape(inChannels: 512, outChannels: 512, kernel: 3, stride: 2, pad: 1, inputSize: 14, name: "layer4.0 3x3/2 512", occurrences: 1),
    ConvLayerShape(inChannels: 512, outChannels: 2048, kernel: 1, stride: 1, pad: 0, inputSize: 7, name: "layer4 1x1 512→2048", occurrences: 3),
    ConvLayerShape(inChannels: 1024, outChannels: 2048, kernel: 1, stride: 2, pad: 0, inputSize: 14, name: "layer4.0 downsample 1x1/2", occurrences: 1),
    ConvLayerShape(inChannels: 2048, outChannels: 512, kernel: 1, stride: 1, pad: 0, inputSize: 7, name: "layer4 1x1 2048→512", occurrences: 2),
    ConvLayerShape(inChannels: 512, outChannels: 512, kernel: 3, stride: 1, pad: 1, inputSize: 7, name: "layer4 3x3 512", occurrences: 2),
]
